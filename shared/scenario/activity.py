"""Who is where, when: the household activity that every emitter in the trace derives from.

From the day plans (wake, away, sleep) this builds interval sets: someone home, awake, asleep,
outdoor dark, and per room the people's presence. Presence comes in two flavours: short *visits*
(a Poisson process whose rate depends on the room and the part of the day) and longer *blocks*
(evening on the sofa, breakfast, home office). Lights, motion sensors, media players and the
heating schedule all read from here, which is what keeps the trace self-consistent: a light is
on because someone is in a dark room, not by coincidence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from shared.scenario.routine import DAY_S, HOUR_S, DayPlan
from shared.scenario.timeline import Interval, clip, intersect, merge, subtract

INTERIOR_ROOMS: Final = frozenset({"hallway", "garage", "utility", "bathroom"})
"""Rooms with little daylight: their lights follow presence at any hour."""

# room: (visits/h in the morning, by day, in the evening, at night while asleep; mean stay s)
_ROOM_USE: Final[dict[str, tuple[float, float, float, float, float]]] = {
    "kitchen": (4.0, 1.0, 2.0, 0.04, 300.0),
    "living_room": (1.0, 1.0, 1.0, 0.0, 600.0),
    "bedroom": (1.5, 0.2, 0.4, 0.0, 240.0),
    "bedroom2": (1.0, 0.3, 0.6, 0.0, 300.0),
    "kids_room": (1.0, 0.5, 1.0, 0.0, 400.0),
    "dining_room": (0.5, 0.2, 0.6, 0.0, 500.0),
    "bathroom": (2.5, 0.6, 1.0, 0.15, 360.0),
    "hallway": (3.0, 0.8, 1.5, 0.08, 45.0),
    "office": (0.3, 0.3, 0.4, 0.0, 700.0),
    "garage": (0.0, 0.15, 0.15, 0.0, 240.0),
    "garden": (0.2, 0.5, 0.5, 0.0, 700.0),
    "utility": (0.3, 0.2, 0.4, 0.0, 150.0),
}


@dataclass(frozen=True, slots=True)
class Activity:
    """Interval sets for one home over the whole scenario (all merged and sorted)."""

    plans: tuple[DayPlan, ...]
    duration_s: float
    sunrise_s: float
    sunset_s: float
    home: list[Interval]
    asleep: list[Interval]
    active: list[Interval]
    dark: list[Interval]
    departures: tuple[float, ...]
    arrivals: tuple[float, ...]
    visits: dict[str, list[Interval]]
    blocks: dict[str, list[Interval]]

    def presence(self, room: str) -> list[Interval]:
        return merge(self.visits.get(room, []) + self.blocks.get(room, []))

    def dark_for(self, room: str) -> list[Interval]:
        """When a room needs artificial light."""
        return [(0.0, self.duration_s)] if room in INTERIOR_ROOMS else self.dark


def build_activity(
    plans: list[DayPlan],
    rooms: tuple[str, ...],
    sun: tuple[float, float],
    duration_s: float,
    rng: random.Random,
) -> Activity:
    """Derive every interval set from the day plans; ``sun`` is (sunrise h, sunset h)."""
    sunrise, sunset = sun[0] * HOUR_S, sun[1] * HOUR_S
    everything = [(0.0, duration_s)]
    away = merge(a for p in plans for a in p.away)
    home = subtract(everything, away)
    awake = merge((p.wake_s, p.sleep_s) for p in plans)
    asleep = intersect(home, subtract(everything, awake))
    active = intersect(home, awake)
    dark = clip(merge(iv for p in plans for iv in _dark(p, sunrise, sunset)), 0.0, duration_s)
    departures = tuple(s for s, _ in away if 0 < s < duration_s)
    arrivals = tuple(e for _, e in away if 0 < e < duration_s)
    blocks = {room: clip(intersect(_blocks(room, plans, rng), home), 0.0, duration_s) for room in rooms}
    visits: dict[str, list[Interval]] = {}
    for room in rooms:
        if room in _ROOM_USE:
            visits[room] = clip(merge(_visits(room, plans, active, asleep, rng)), 0.0, duration_s)
    passing = [(t - 120.0, t) for t in departures] + [(t, t + 120.0) for t in arrivals]
    visits["hallway"] = clip(merge([*visits.get("hallway", []), *passing]), 0.0, duration_s)
    return Activity(
        tuple(plans),
        duration_s,
        sunrise,
        sunset,
        home,
        asleep,
        active,
        dark,
        departures,
        arrivals,
        visits,
        blocks,
    )


def _dark(plan: DayPlan, sunrise_s: float, sunset_s: float) -> tuple[Interval, Interval]:
    """Too dark indoors without light: until 1 h after sunrise, from 1.5 h before sunset.

    Rooms get dim well before the sky does (walls, trees, north-facing windows).
    """
    day = plan.start_s
    return (day, day + sunrise_s + 3600.0), (day + sunset_s - 5400.0, day + DAY_S)


def _phase_rates(room: str, plan: DayPlan) -> list[tuple[Interval, float]]:
    """(interval, visits per hour) for the parts of one day; the caller intersects with presence."""
    morning, by_day, evening, _night, _stay = _ROOM_USE[room]
    evening_from = plan.start_s + 17 * HOUR_S
    return [
        ((plan.wake_s, plan.wake_s + 2 * HOUR_S), morning),
        ((plan.wake_s + 2 * HOUR_S, evening_from), by_day),
        ((evening_from, plan.sleep_s), evening),
    ]


def _visits(
    room: str, plans: list[DayPlan], active: list[Interval], asleep: list[Interval], rng: random.Random
) -> list[Interval]:
    night_rate, stay = _ROOM_USE[room][3], _ROOM_USE[room][4]
    segments: list[tuple[Interval, float]] = []
    for plan in plans:
        for span, rate in _phase_rates(room, plan):
            segments += [(iv, rate) for iv in intersect([span], active)]
    segments += [(iv, night_rate) for iv in asleep]
    out: list[Interval] = []
    for (start, end), rate in segments:
        if rate <= 0.0:
            continue
        t = start + rng.expovariate(rate / HOUR_S)
        while t < end:
            length = min(max(rng.expovariate(1.0 / stay), 20.0), 4 * stay)
            out.append((t, min(t + length, end)))
            t += length + rng.expovariate(rate / HOUR_S)
    return out


def _blocks(room: str, plans: list[DayPlan], rng: random.Random) -> list[Interval]:
    """Long, routine stays: evenings in the living room, meals, bedtime, home-office hours."""
    out: list[Interval] = []
    for p in plans:
        day = p.start_s
        if room == "living_room":
            out.append((day + rng.uniform(18.0, 19.5) * HOUR_S, p.sleep_s - rng.uniform(300.0, 1200.0)))
            if p.weekend:
                out.append((day + rng.uniform(14.0, 15.0) * HOUR_S, day + rng.uniform(16.0, 17.5) * HOUR_S))
        elif room == "kitchen":
            breakfast = p.wake_s + rng.uniform(300.0, 900.0)
            dinner = day + rng.uniform(18.0, 19.0) * HOUR_S
            out += [
                (breakfast, breakfast + rng.uniform(1200.0, 2100.0)),
                (dinner, dinner + rng.uniform(1800.0, 3000.0)),
            ]
        elif room == "dining_room":
            dinner = day + rng.uniform(19.0, 19.5) * HOUR_S
            out.append((dinner, dinner + rng.uniform(1800.0, 2700.0)))
        elif room == "bedroom":
            out += [
                (p.sleep_s - rng.uniform(900.0, 1800.0), p.sleep_s),
                (p.wake_s, p.wake_s + rng.uniform(300.0, 900.0)),
            ]
        elif room == "kids_room":
            out.append((day + rng.uniform(19.5, 20.0) * HOUR_S, day + rng.uniform(20.25, 20.75) * HOUR_S))
        elif room == "office" and p.home_office:
            out += [(day + 9.0 * HOUR_S, day + 12.5 * HOUR_S), (day + 13.25 * HOUR_S, day + 17.0 * HOUR_S)]
    return out
