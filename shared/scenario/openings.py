"""Emitters for things that open, close or detect: covers, locks and binary sensors.

Doors and locks follow departures and arrivals (unlock, open, close, lock again; auto-lock after
``auto_lock_s`` when someone is home), blinds open after waking and close at dusk or bedtime, the
garage door opens for the car, windows are aired, and motion sensors fire while people move in a
room (and go quiet while they sit still on the sofa).
"""

from __future__ import annotations

import random
from typing import Final

from shared.scenario.model import Entity
from shared.scenario.routine import DAY_S, HOUR_S
from shared.scenario.timeline import Interval, clip, intersect, merge
from shared.scenario.track import HomeState, Track, thing_of

_STEADY_OFF: Final = frozenset({"smoke", "moisture"})


def _front_door(st: HomeState) -> tuple[list[Interval], list[tuple[float, float, bool]]]:
    """Door-open intervals and (unlock, close, left_home) passages through the front door."""
    rng = st.rng(f"{st.home.home_id}/front_door")
    act = st.activity
    passages: list[tuple[float, float, float, bool]] = []
    for t in act.departures:
        passages.append((t - 45.0, t - 30.0, t - 30.0 + rng.uniform(8.0, 20.0), True))
    for t in act.arrivals:
        opens = t + rng.uniform(5.0, 15.0)
        passages.append((t, opens, opens + rng.uniform(10.0, 40.0), False))
    for start, end in act.active:
        for _ in range(rng.choice((0, 1, 1, 2))):
            t = rng.uniform(start, end)
            if t + 120.0 < end:
                passages.append((t - 5.0, t, t + rng.uniform(20.0, 60.0), False))
    passages.sort()
    opened = merge((o, c) for _, o, c, _ in passages)
    return opened, [(u, c, left) for u, _, c, left in passages]


def emit_lock(entity: Entity, st: HomeState) -> Track:
    auto_lock = entity.number("auto_lock_s")
    thing = thing_of(entity, st.home.home_id)
    act = st.activity
    if thing == "front_door":
        _, passages = _front_door(st)
        spans = [(u, c + (5.0 if left else auto_lock)) for u, c, left in passages]
    elif thing == "gate":
        spans = [(o - 5.0, c + 5.0) for o, c in _gate(st)]
    else:
        spans = [(s - 5.0, e + auto_lock) for s, e in intersect(act.visits.get(entity.room, []), act.home)]
    track = st.track(entity, "locked")
    for start, end in clip(merge(spans), 0.0, act.duration_s):
        track.set(start, "unlocked")
        track.set(end, "locked")
    return track


def _gate(st: HomeState) -> list[Interval]:
    rng = st.rng(f"{st.home.home_id}/gate")
    act = st.activity
    spans = [(t + 20.0, t + 20.0 + rng.uniform(10.0, 20.0)) for t in act.departures]
    spans += [(t - 40.0, t - 40.0 + rng.uniform(10.0, 20.0)) for t in act.arrivals]
    return merge(spans)


def emit_cover(entity: Entity, st: HomeState) -> Track:
    rng = st.rng(entity.entity_id)
    travel = entity.number("travel_time_s")
    kind = entity.text("device_class")
    act = st.activity
    if kind == "garage":
        spans = _garage_spans(st, rng)
    elif kind == "awning":
        spans = _awning_spans(st, rng)
    else:
        spans = _blind_spans(entity, st, rng)
    spans = clip(merge(spans, gap=2 * travel), 0.0, act.duration_s)
    track = st.track(entity, "closed", {"current_position": 0})
    for start, end in spans:
        track.set(start, "opening", {"current_position": 0})
        track.set(start + travel, "open", {"current_position": 100})
        if kind == "blind" and end - start > 6 * HOUR_S and rng.random() < 0.3:
            noon = start + (end - start) / 2
            track.set(noon, "open", {"current_position": rng.choice((30, 40, 50))})
            track.set(noon + 2 * HOUR_S, "open", {"current_position": 100})
        track.set(end, "closing", {"current_position": 100})
        track.set(end + travel, "closed", {"current_position": 0})
    opened = [(s, e + travel) for s, e in spans]
    if kind == "garage":
        st.garage_open = opened
    else:
        st.shaded[entity.room] = _complement(opened, act.duration_s)
    return track


def _complement(spans: list[Interval], duration_s: float) -> list[Interval]:
    cuts = [0.0] + [x for s, e in spans for x in (s, e)] + [duration_s]
    return [(cuts[k], cuts[k + 1]) for k in range(0, len(cuts), 2) if cuts[k + 1] > cuts[k]]


def _blind_spans(entity: Entity, st: HomeState, rng: random.Random) -> list[Interval]:
    act = st.activity
    spans: list[Interval] = []
    for p in act.plans:
        opens = p.wake_s + rng.uniform(300.0, 1500.0)
        dusk = p.start_s + act.sunset_s + rng.uniform(-1800.0, 900.0)
        bedtime = p.sleep_s - rng.uniform(600.0, 1800.0)
        spans.append((opens, bedtime if entity.room.startswith(("bed", "kids")) else min(dusk, bedtime)))
    return spans


def _garage_spans(st: HomeState, rng: random.Random) -> list[Interval]:
    act = st.activity
    spans: list[Interval] = []
    for t in act.departures:
        if rng.random() < 0.8:
            start = t + rng.uniform(30.0, 90.0)
            spans.append((start, start + rng.uniform(60.0, 150.0)))
    for t in act.arrivals:
        if rng.random() < 0.8:
            start = t - rng.uniform(90.0, 150.0)
            spans.append((start, start + rng.uniform(60.0, 90.0)))
    return spans


def _awning_spans(st: HomeState, rng: random.Random) -> list[Interval]:
    act = st.activity
    spans = [
        (p.start_s + rng.uniform(11.5, 13.0) * HOUR_S, p.start_s + rng.uniform(16.5, 18.0) * HOUR_S)
        for p in act.plans
        if rng.random() < 0.6
    ]
    return intersect(spans, act.home)


def emit_binary(entity: Entity, st: HomeState) -> Track:
    kind = entity.text("device_class")
    thing = thing_of(entity, st.home.home_id)
    track = st.track(entity, "off")
    if kind in _STEADY_OFF:
        return track
    if kind == "motion":
        spans = _motion(entity, st)
    elif thing == "front_door":
        spans = _front_door(st)[0]
    elif thing == "gate":
        spans = _gate(st)
    elif thing == "garage_door":
        spans = st.garage_open
    else:
        spans = _window(entity, st)
    for start, end in clip(merge(spans), 0.0, st.duration_s):
        track.set(start, "on")
        track.set(end, "off")
    return track


def _motion(entity: Entity, st: HomeState) -> list[Interval]:
    """Moving people: every visit, plus bursts of movement separated by still spells in blocks."""
    rng = st.rng(entity.entity_id)
    timeout = entity.number("occupancy_timeout_s")
    act = st.activity
    moving = list(act.visits.get(entity.room, []))
    for start, end in act.blocks.get(entity.room, []):
        t = start
        while t < end:
            burst = rng.uniform(120.0, 900.0)
            moving.append((t, min(end, t + burst)))
            t += burst + rng.uniform(60.0, 900.0)
    return merge(((s, e + timeout) for s, e in moving), gap=0.0)


def _window(entity: Entity, st: HomeState) -> list[Interval]:
    """Airing: after the shower, while cooking, overnight in summer bedrooms, some afternoons."""
    rng = st.rng(entity.entity_id)
    act = st.activity
    room = entity.room
    spans: list[Interval] = []
    for p in act.plans:
        if room == "bathroom" and rng.random() < 0.7:
            start = p.wake_s + rng.uniform(900.0, 1800.0)
            spans.append((start, start + rng.uniform(600.0, 1800.0)))
        elif room == "kitchen" and rng.random() < 0.5:
            start = p.start_s + rng.uniform(18.0, 19.0) * HOUR_S
            spans.append((start, start + rng.uniform(900.0, 2400.0)))
        elif room == "bedroom" and rng.random() < 0.4:
            spans.append((p.sleep_s - rng.uniform(300.0, 900.0), p.wake_s + DAY_S))
        elif rng.random() < 0.3:
            start = p.start_s + rng.uniform(9.0, 16.0) * HOUR_S
            spans.append((start, start + rng.uniform(900.0, 3600.0)))
    return intersect(spans, act.home) if room != "bedroom" else spans
