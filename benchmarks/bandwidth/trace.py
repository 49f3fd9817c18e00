"""The trace every system sends: each home's changes, their replay through the compressor, the JSON
state per tick, and the schedule of periodic jobs."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from benchmarks.bandwidth.options import BandwidthBench
from edge.compressor import CompressorSettings
from edge.fidelity import ReplayResult, replay
from shared.scenario import Scenario, StateChange, to_state_object
from shared.scenario.model import AttrValue


@dataclass(frozen=True, slots=True)
class Home:
    index: int
    twin_id: str
    changes: tuple[StateChange, ...]
    replayed: ReplayResult


def homes(scenario: Scenario, opts: BandwidthBench) -> list[Home]:
    """Each home's changes and its replay through the compressor, over the first ``hours``."""
    sliced = dataclasses.replace(scenario, duration_s=opts.hours * 3600.0)
    out = []
    for index, home in enumerate(scenario.homes):
        ids = {e.entity_id for e in home.entities}
        changes = tuple(c for c in scenario.trace if c.entity_id in ids and c.ts_s < sliced.duration_s)
        result = replay(sliced, index, CompressorSettings(), opts.tick_s, sample_every=opts.sample_every)
        out.append(Home(index, home.home_id, changes, result))
    return out


def state_ticks(
    changes: Sequence[StateChange], start_iso: str, tick_s: float, duration_s: float
) -> Iterator[tuple[float, bytes]]:
    """(trace time, JSON) per tick: every entity's current HA state object, as edge.fidelity's baseline."""
    attrs: dict[str, dict[str, AttrValue]] = {}
    changed_at: dict[str, tuple[str, float]] = {}
    objects: dict[str, str] = {}
    i = 0
    for k in range(math.ceil(duration_s / tick_s)):
        now = k * tick_s
        while i < len(changes) and changes[i].ts_s <= now:
            c = changes[i]
            held = attrs.setdefault(c.entity_id, {})
            held.update(c.attributes)
            previous = changed_at.get(c.entity_id)
            since = previous[1] if previous is not None and previous[0] == c.state else c.ts_s
            changed_at[c.entity_id] = (c.state, since)
            full = StateChange(c.ts_s, c.entity_id, c.state, held)
            obj = to_state_object(full, start_iso, last_changed_s=since)
            objects[c.entity_id] = json.dumps(obj, ensure_ascii=False)
            i += 1
        yield now, ("[" + ", ".join(objects.values()) + "]").encode()


def schedule(duration_s: float, period_s: float) -> list[float]:
    """Trace times of a periodic job: the end of each period, the last one at the end of the trace."""
    n = max(1, math.ceil(duration_s / period_s - 1e-9))
    return [min(duration_s, (j + 1) * period_s) for j in range(n)]
