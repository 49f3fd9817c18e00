"""``generate()``: a seeded, deterministic smart-home world (homes, static facts, 24 h trace).

All randomness flows from the seed through ``random.Random`` instances (never the global one,
never the clock, never the salted ``hash()``), so the same arguments give byte-identical
``Scenario.to_json()`` output in any process. Static facts come from one stream drawn in a fixed
order; each home's routine, activity and each entity's trace draw from their own string-seeded
streams so they stay stable when other parts of the world change.
"""

from __future__ import annotations

import math
import random
from datetime import datetime

from shared.errors import ScenarioError
from shared.scenario.activity import build_activity
from shared.scenario.catalog import FIRST_NAMES, LAST_NAMES, REGIONS, STREETS
from shared.scenario.homes import build_home, draw_secrets
from shared.scenario.model import DEFAULT_START_ISO, Home, Scenario, StateChange
from shared.scenario.routine import DAY_S, day_plans, draw_routine
from shared.scenario.trace import home_trace

MAX_HOMES = 500
MAX_DURATION_S = 31 * DAY_S


def generate(
    seed: int = 7, homes: int = 3, duration_s: float = DAY_S, start_iso: str = DEFAULT_START_ISO
) -> Scenario:
    """Build the scenario: ``homes`` households in sharing groups of 3-5, traced for ``duration_s``.

    Raises ScenarioError for a non-integer seed, ``homes`` outside 1..500, a duration that is not
    a positive finite number of seconds up to 31 days, or a start time without a timezone.
    """
    start = _validate(seed, homes, duration_s, start_iso)
    rng = random.Random(seed)
    placement = _groups(rng, homes)
    owners = rng.sample(range(len(FIRST_NAMES) * len(LAST_NAMES)), homes)
    taken: set[str] = set()
    built: list[Home] = []
    trace: list[StateChange] = []
    for index in range(1, homes + 1):
        group, region = placement[index - 1]
        owner = owners[index - 1]
        name = f"{FIRST_NAMES[owner // len(LAST_NAMES)]} {LAST_NAMES[owner % len(LAST_NAMES)]}"
        routine = draw_routine(rng)
        home = build_home(rng, index, region, group, draw_secrets(rng, name, taken), routine)
        built.append(home)
        plans = day_plans(routine, duration_s, start.weekday(), random.Random(f"{seed}/{home.home_id}/days"))
        activity = build_activity(
            plans, home.rooms, REGIONS[region], duration_s, random.Random(f"{seed}/{home.home_id}/activity")
        )
        trace += home_trace(home, activity, seed)
    trace.sort(key=lambda c: (c.ts_s, c.entity_id))
    return Scenario(seed, start_iso, float(duration_s), tuple(built), tuple(trace))


def _validate(seed: object, homes: object, duration_s: object, start_iso: object) -> datetime:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ScenarioError(f"seed must be an integer, got {type(seed).__name__}")
    if not isinstance(homes, int) or isinstance(homes, bool) or not 1 <= homes <= MAX_HOMES:
        raise ScenarioError(f"homes must be an integer in 1..{MAX_HOMES}, got {str(homes)[:60]!r}")
    if (
        not isinstance(duration_s, int | float)
        or isinstance(duration_s, bool)
        or not math.isfinite(duration_s)
        or not 0 < duration_s <= MAX_DURATION_S
    ):
        limit = f"(0, {MAX_DURATION_S:.0f}]"
        raise ScenarioError(
            f"duration_s must be a number of seconds in {limit}, got {str(duration_s)[:60]!r}"
        )
    if not isinstance(start_iso, str):
        raise ScenarioError(f"start_iso must be an ISO 8601 string, got {type(start_iso).__name__}")
    try:
        start = datetime.fromisoformat(start_iso)
    except ValueError:
        raise ScenarioError(f"start_iso is not ISO 8601: {start_iso[:60]!r}") from None
    if start.tzinfo is None:
        raise ScenarioError(f"start_iso needs a timezone (e.g. +00:00): {start_iso[:60]!r}")
    return start


def _groups(rng: random.Random, homes: int) -> list[tuple[str, str]]:
    """(sharing group, region) per home: consecutive homes form groups of 3-5 on one street.

    Up to five homes share one group, so the default three can all query each other.
    """
    sizes: list[int] = []
    while sum(sizes) < homes:
        sizes.append(rng.randint(3, 5))
    sizes[-1] -= sum(sizes) - homes
    if len(sizes) > 1 and sizes[-1] < 3:
        sizes[-2] += sizes.pop()
    out: list[tuple[str, str]] = []
    used: set[str] = set()
    for size in sizes:
        group = f"{rng.choice(STREETS)}-{rng.randint(1, 99)}"
        while group in used:
            group = f"{rng.choice(STREETS)}-{rng.randint(1, 99)}"
        used.add(group)
        region = rng.choice(sorted(REGIONS))
        out += [(group, region)] * size
    return out
