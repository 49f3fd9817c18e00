"""How faithful is the gateway's picture, and what does it cost? Fidelity and the replay harness.

Fidelity compares the state the gateway rebuilds from the prompts (``shared.semantic.apply``, in
order, exactly as the gateway does) with the true dynamic state at query times: the fraction of
(entity, value) pairs that agree — numbers within their deadband, everything else equal. Pairs
are the truth's state and attributes *and* anything the gateway holds that the truth does not (a
stale attribute, a ghost entity), so "sent too little" and "never cleared" both count against it.

``replay`` runs one scenario home's trace through the state split and the compressor at a tick
period, and measures the prompts against a conventional IoT twin that sends the full JSON state of
every entity every tick. Everything is in memory and deterministic.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from edge.compressor import Compressor, CompressorSettings, TickKind, Tolerances, as_number, state_quantity
from edge.readings import Reading, StaticRecord
from edge.state_store import AttributePolicy, split
from shared.scenario import Scenario, StateChange, to_state_object
from shared.scenario.model import AttrValue
from shared.semantic import EntityState, Value, apply, decode_prompt, format_value

PROMPT_OVERHEAD_BYTES = 120  # header, framing and CURVE per StateUpload on the wire (measured ~100 B)


@dataclass(frozen=True, slots=True)
class Score:
    """Agreeing pairs out of all pairs compared; scores add up over query times."""

    matched: int = 0
    total: int = 0

    @property
    def fraction(self) -> float:
        return self.matched / self.total if self.total else 1.0

    def __add__(self, other: Score) -> Score:
        return Score(self.matched + other.matched, self.total + other.total)


def reconstruct(texts: Iterable[str], twin_id: str) -> dict[str, EntityState]:
    """The gateway's state after these prompts, applied in order from nothing."""
    state: dict[str, EntityState] = {}
    for text in texts:
        state = apply(state, decode_prompt(text, twin_id))
    return state


def score(
    reconstructed: Mapping[str, EntityState], truth: Mapping[str, EntityState], tolerances: Tolerances
) -> Score:
    """Compare one snapshot. A removed / unavailable entity the truth lacks is no pair."""
    return Scorer(tolerances).score(reconstructed, truth)


class Scorer:
    """``score`` with a per-entity memo: across query times most entities are the same objects,
    so a day of 10 s samples costs what its changes cost, not 8640 full comparisons."""

    def __init__(self, tolerances: Tolerances) -> None:
        self.tolerances = tolerances
        self._memo: dict[str, tuple[EntityState | None, EntityState, tuple[int, int]]] = {}

    def score(self, reconstructed: Mapping[str, EntityState], truth: Mapping[str, EntityState]) -> Score:
        matched = total = 0
        for entity_id, true in truth.items():
            held = reconstructed.get(entity_id)
            memo = self._memo.get(entity_id)
            if memo is not None and memo[0] is held and memo[1] is true:
                pairs = memo[2]
            else:
                pairs = _entity_pairs(held, true, self.tolerances)
                self._memo[entity_id] = (held, true, pairs)
            matched, total = matched + pairs[0], total + pairs[1]
        ghosts = sum(1 for e, s in reconstructed.items() if e not in truth and s.state is not None)
        return Score(matched, total + ghosts)


def _entity_pairs(held: EntityState | None, true: EntityState, tol: Tolerances) -> tuple[int, int]:
    if true.state is None:
        return int(held is not None and held.state is None), 1
    if held is None or held.state is None:
        return 0, 1 + len(true.attributes)
    matched = int(_state_agrees(held.state, true, tol))
    held_attrs, true_attrs = held.attrs(), true.attrs()
    names = held_attrs.keys() | true_attrs.keys()
    for name in names:
        if name in held_attrs and name in true_attrs:
            matched += _value_agrees(tol.key(name), held_attrs[name], true_attrs[name], tol)
    return matched, 1 + len(names)


def _state_agrees(held: str, true: EntityState, tol: Tolerances) -> bool:
    quantity = state_quantity(true)
    if quantity is None or state_quantity(EntityState(true.entity_id, held)) is None:
        return held == true.state
    return tol.within(quantity, float(held), float(true.state or 0))


def _value_agrees(key: str, held: Value, true: Value, tol: Tolerances) -> bool:
    a, b = as_number(held), as_number(true)
    if a is None or b is None:
        return format_value(held) == format_value(true)
    return tol.within(key, a, b)


def fidelity(
    prompts: Sequence[tuple[float, str]],
    truth: Sequence[tuple[float, Mapping[str, EntityState]]],
    twin_id: str,
    tolerances: Tolerances,
) -> Score:
    """Score at every query time in ``truth`` (sorted), holding the prompts with ``ts <= time``."""
    scorer = Scorer(tolerances)
    state: dict[str, EntityState] = {}
    total = Score()
    i = 0
    for when, snapshot in truth:
        while i < len(prompts) and prompts[i][0] <= when:
            state = apply(state, decode_prompt(prompts[i][1], twin_id))
            i += 1
        total += scorer.score(state, snapshot)
    return total


# ------------------------------------------------------------------------------------------------
# replay harness


@dataclass(frozen=True, slots=True)
class PromptRecord:
    ts: float
    kind: TickKind
    text: str


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """One home's day through the compressor, against the full-JSON-every-tick baseline."""

    twin_id: str
    tick_s: float
    ticks: int
    prompts: tuple[PromptRecord, ...]
    prompt_bytes: int  # UTF-8 prompt text only
    baseline_bytes: int  # json.dumps (UTF-8) of a list of every entity's HA state object, every tick
    fidelity: Score  # at each sampled tick, after that tick's prompt
    fidelity_stale: Score  # just before each sampled tick: also pays for up to tick_s of latency

    @property
    def keyframes(self) -> int:
        return sum(1 for p in self.prompts if p.kind == "key")

    def wire_bytes(self, overhead: int = PROMPT_OVERHEAD_BYTES) -> int:
        return self.prompt_bytes + overhead * len(self.prompts)

    def ratio(self, overhead: int = PROMPT_OVERHEAD_BYTES) -> float:
        """Baseline bytes over prompt bytes, each prompt charged ``overhead`` for its framing."""
        return self.baseline_bytes / max(1, self.wire_bytes(overhead))


def replay(
    scenario: Scenario,
    home_index: int,
    settings: CompressorSettings,
    tick_s: float,
    *,
    policy: AttributePolicy | None = None,
    sample_every: int = 1,
) -> ReplayResult:
    """Run home ``home_index`` (0-based) of ``scenario`` for its whole duration at ``tick_s``."""
    if not 0 <= home_index < len(scenario.homes):
        raise ValueError(f"home_index {home_index} outside 0..{len(scenario.homes) - 1}")
    home = scenario.homes[home_index]
    ids = {e.entity_id for e in home.entities}
    facts = [StaticRecord(f.entity_id, f.attribute, f.value, f.sensitive) for f in home.static_facts()]
    changes = [c for c in scenario.trace if c.entity_id in ids]
    return replay_changes(
        changes, home.home_id, facts, settings, tick_s, scenario.duration_s,
        start_iso=scenario.start_iso, policy=policy, sample_every=sample_every,
    )  # fmt: skip


def replay_changes(
    changes: Sequence[StateChange],
    twin_id: str,
    facts: Sequence[StaticRecord],
    settings: CompressorSettings,
    tick_s: float,
    duration_s: float,
    *,
    start_iso: str,
    policy: AttributePolicy | None = None,
    sample_every: int = 1,
) -> ReplayResult:
    """The harness proper, over any time-sorted changes (tests inject leaky ones here)."""
    if not math.isfinite(tick_s) or tick_s <= 0 or sample_every < 1:
        raise ValueError("tick_s must be > 0 and sample_every >= 1")
    policy = policy or AttributePolicy()
    sensitive = policy.sensitive | {f.attribute for f in facts if f.sensitive}
    compressor = Compressor.from_settings(twin_id, settings)
    world = _World(policy, sensitive | settings.sensitive, start_iso)
    scorer = Scorer(compressor.tolerances)
    gateway: dict[str, EntityState] = {}
    prompts: list[PromptRecord] = []
    fresh = stale = Score()
    baseline = i = 0
    ticks = math.ceil(duration_s / tick_s)
    for k in range(ticks):
        now = k * tick_s
        while i < len(changes) and changes[i].ts_s <= now:
            world.take(changes[i])
            i += 1
        baseline += world.baseline_bytes()
        sampled = k % sample_every == 0
        if sampled:
            stale += scorer.score(gateway, world.current)
        tick = compressor.tick(now, world.current)
        if tick is not None:
            prompts.append(PromptRecord(tick.ts, tick.kind, tick.text))
            gateway = apply(gateway, decode_prompt(tick.text, twin_id))
        if sampled:
            fresh += scorer.score(gateway, world.current)
    size = sum(len(p.text.encode()) for p in prompts)
    return ReplayResult(twin_id, tick_s, ticks, tuple(prompts), size, baseline, fresh, stale)


class _World:
    """The true state in two forms: the store's dynamic split, and HA state objects (the baseline)."""

    def __init__(self, policy: AttributePolicy, sensitive: frozenset[str], start_iso: str) -> None:
        self._policy = policy
        self._sensitive = sensitive
        self._start_iso = start_iso
        self.current: dict[str, EntityState] = {}
        self._ha_attrs: dict[str, dict[str, AttrValue]] = {}
        self._changed_at: dict[str, tuple[str, float]] = {}
        self._json_len: dict[str, int] = {}

    def take(self, change: StateChange) -> None:
        reading = Reading(change.entity_id, change.state, change.attributes, change.ts_s, "replay")
        self.current[change.entity_id], _ = split(reading, self._policy, self._sensitive)
        # what Home Assistant's /api/states shows: every attribute it was ever told, last_changed kept
        attrs = self._ha_attrs.setdefault(change.entity_id, {})
        attrs.update(change.attributes)
        previous = self._changed_at.get(change.entity_id)
        since = previous[1] if previous is not None and previous[0] == change.state else change.ts_s
        self._changed_at[change.entity_id] = (change.state, since)
        full = StateChange(change.ts_s, change.entity_id, change.state, attrs)
        obj = to_state_object(full, self._start_iso, last_changed_s=since)
        self._json_len[change.entity_id] = len(json.dumps(obj, ensure_ascii=False).encode())

    def baseline_bytes(self) -> int:
        """``len(json.dumps([obj, obj, ...]))`` without building it: items plus ``[``, ``]``, ``, ``."""
        n = len(self._json_len)
        return sum(self._json_len.values()) + 2 + 2 * max(0, n - 1) if n else 0
