"""Switch and media-player emitters: appliances that run on the household's routine.

Each switched appliance has a daily usage pattern (coffee after waking, the dishwasher before bed,
the EV charging after coming home ...) and a load profile (a dishwasher heats, idles, heats again)
that the power and energy meters in the utility room later integrate. Media players play in the
evening blocks when people sit in the living room, with pauses and volume changes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from shared.scenario.activity import Activity
from shared.scenario.model import AttrValue, Entity
from shared.scenario.routine import HOUR_S, DayPlan
from shared.scenario.timeline import Interval, clip, covers, merge
from shared.scenario.track import HomeState, Track, thing_of

Pattern = Callable[[DayPlan, Activity, random.Random], list[Interval]]


def _coffee(p: DayPlan, act: Activity, rng: random.Random) -> list[Interval]:
    start = p.wake_s + rng.uniform(300.0, 1200.0)
    runs = [(start, start + rng.uniform(240.0, 600.0))]
    if p.weekend and rng.random() < 0.5:
        afternoon = p.start_s + rng.uniform(15.0, 16.0) * HOUR_S
        runs.append((afternoon, afternoon + 300.0))
    return runs


def _dishwasher(p: DayPlan, act: Activity, rng: random.Random) -> list[Interval]:
    if rng.random() >= 0.6:
        return []
    start = p.sleep_s - rng.uniform(1800.0, 3600.0)
    return [(start, start + rng.uniform(6000.0, 8400.0))]


def _towel_heater(p: DayPlan, act: Activity, rng: random.Random) -> list[Interval]:
    return [(p.wake_s - rng.uniform(600.0, 1800.0), p.wake_s + rng.uniform(2400.0, 4200.0))]


def _monitor(p: DayPlan, act: Activity, rng: random.Random) -> list[Interval]:
    runs = [iv for iv in act.blocks.get("office", []) if p.start_s <= iv[0] < p.start_s + 24 * HOUR_S]
    if rng.random() < 0.25:
        runs.append((p.start_s + 20.0 * HOUR_S, p.start_s + rng.uniform(21.0, 22.0) * HOUR_S))
    return runs


def _ev_charger(p: DayPlan, act: Activity, rng: random.Random) -> list[Interval]:
    runs = []
    for _, back in p.away:
        if rng.random() < 0.6:
            start = back + rng.uniform(300.0, 900.0)
            runs.append((start, start + rng.uniform(2.0, 4.0) * HOUR_S))
    return runs


def _irrigation(p: DayPlan, act: Activity, rng: random.Random) -> list[Interval]:
    morning = p.start_s + 6.0 * HOUR_S + rng.uniform(-900.0, 900.0)
    runs = [(morning, morning + rng.uniform(900.0, 1500.0))]
    if rng.random() < 0.5:
        runs.append((p.start_s + 21.5 * HOUR_S, p.start_s + 21.75 * HOUR_S))
    return runs


def _washing(p: DayPlan, act: Activity, rng: random.Random) -> list[Interval]:
    start = p.start_s + rng.uniform(9.0, 19.0) * HOUR_S
    if rng.random() >= 0.5 or not covers(act.home, start):
        return []
    return [(start, start + rng.uniform(5400.0, 7200.0))]


def _water_heater(p: DayPlan, act: Activity, rng: random.Random) -> list[Interval]:
    return [
        (p.start_s + 5.0 * HOUR_S, p.start_s + 6.5 * HOUR_S),
        (p.start_s + 17.0 * HOUR_S, p.start_s + 18.5 * HOUR_S),
    ]


PATTERNS: Final[dict[str, Pattern]] = {
    "coffee_maker": _coffee,
    "dishwasher": _dishwasher,
    "towel_heater": _towel_heater,
    "monitor": _monitor,
    "ev_charger": _ev_charger,
    "irrigation": _irrigation,
    "washing_machine": _washing,
    "water_heater": _water_heater,
}

# thing: ((seconds from start or, if negative, from end; share of rated power), ...) - phases
_PHASES: Final[dict[str, tuple[tuple[float, float], ...]]] = {
    "dishwasher": ((0.0, 1.0), (1500.0, 0.06), (-1200.0, 0.9)),
    "washing_machine": ((0.0, 0.95), (900.0, 0.12), (-600.0, 0.35)),
    "monitor": ((0.0, 0.8),),
}


def load_segments(thing: str, run: Interval, rated_w: float) -> list[tuple[float, float, float]]:
    """(start, end, watts) pieces of one appliance run, following its phase table."""
    start, end = run
    phases = _PHASES.get(thing, ((0.0, 1.0),))
    marks = [start + off if off >= 0 else end + off for off, _ in phases]
    out: list[tuple[float, float, float]] = []
    for k, (_, share) in enumerate(phases):
        seg_start = max(start, marks[k])
        seg_end = min(end, marks[k + 1]) if k + 1 < len(marks) else end
        if seg_end > seg_start:
            out.append((seg_start, seg_end, rated_w * share))
    return out


def emit_switch(entity: Entity, st: HomeState) -> Track:
    rng = st.rng(entity.entity_id)
    thing = thing_of(entity, st.home.home_id)
    act = st.activity
    runs = clip(merge(iv for p in act.plans for iv in PATTERNS[thing](p, act, rng)), 0.0, act.duration_s)
    rated = entity.number("rated_power_w")
    segments = [seg for run in runs for seg in load_segments(thing, run, rated)]
    st.appliance[thing] = segments
    st.loads.extend(segments)
    track = st.track(entity, "off")
    for start, end in runs:
        track.set(start, "on")
        track.set(end, "off")
    return track


_MEDIA_WATTS: Final = {"tv": 95.0, "speaker": 6.0}


def _sessions(entity: Entity, st: HomeState, rng: random.Random) -> list[Interval]:
    """When a player plays: TV in the living-room evening, speakers with their room's routine."""
    act = st.activity
    blocks = act.blocks.get(entity.room, [])
    if entity.text("device_class") == "tv":
        return [
            (s + rng.uniform(0.0, 2400.0), e - rng.uniform(0.0, 1200.0))
            for s, e in blocks
            if e - s > 2 * HOUR_S or rng.random() < 0.4
        ]
    if entity.room == "bedroom":
        return [
            (e - rng.uniform(1200.0, 2400.0), e - rng.uniform(60.0, 300.0))
            for s, e in blocks
            if rng.random() < 0.5
        ]
    if blocks:
        return [(s + rng.uniform(60.0, 600.0), e) for s, e in blocks if rng.random() < 0.6]
    return [
        (p.wake_s + 600.0, p.wake_s + rng.uniform(1800.0, 3000.0)) for p in act.plans if rng.random() < 0.5
    ]


def emit_media(entity: Entity, st: HomeState) -> Track:
    rng = st.rng(entity.entity_id)
    sources = entity.strings("source_list")
    max_volume = entity.integer("max_volume_pct") / 100.0
    off: dict[str, AttrValue] = {"volume_level": None, "source": None}
    track = st.track(entity, "off", off)
    kind = entity.text("device_class")
    act = st.activity
    for start, end in clip(merge(_sessions(entity, st, rng), gap=300.0), 0.0, act.duration_s):
        source = rng.choice(sources)
        volume = round(rng.uniform(0.15, max_volume), 2)
        t = start
        while t < end:
            track.set(t, "playing", {"volume_level": volume, "source": source})
            t += rng.uniform(1800.0, 3600.0)
            if t >= end:
                break
            track.set(t, "paused", {"volume_level": volume, "source": source})
            t += rng.uniform(120.0, 420.0)
            if rng.random() < 0.3:
                volume = round(min(max_volume, max(0.05, volume + rng.uniform(-0.1, 0.1))), 2)
        track.set(end, "off", off)
        st.loads.append((start, end, _MEDIA_WATTS[kind]))
    return track
