"""Light emitters: lights follow people in dark rooms, outdoor lights follow dusk and arrivals.

A light is on when someone is in its room and the room is dark (interior rooms are always dark),
stays on for a short off-delay like a motion automation would, and is dimmer and warmer late in
the evening. Brightness always lies within the light's own ``min/max_brightness_pct`` facts and is
reported as HA's 0-255 ``brightness``; ``color_temp`` within ``min/max_mireds``.
"""

from __future__ import annotations

import random
from typing import Final

from shared.scenario.model import AttrValue, Entity, pct_to_brightness
from shared.scenario.routine import DAY_S, HOUR_S
from shared.scenario.timeline import Interval, clip, intersect, merge
from shared.scenario.track import HomeState, Track, thing_of

AMBIENT: Final = frozenset({"floor_lamp", "tv_backlight", "bedside", "night_light", "lamp", "desk_lamp"})
_LUX_PER_PCT: Final = 3.0


def emit_light(entity: Entity, st: HomeState) -> Track:
    rng = st.rng(entity.entity_id)
    low, high = entity.integer("min_brightness_pct"), entity.integer("max_brightness_pct")
    has_ct = "color_temp" in entity.dynamic_attributes
    mireds = (entity.integer("min_mireds"), entity.integer("max_mireds")) if has_ct else (0, 0)
    off: dict[str, AttrValue] = {"brightness": None, "color_temp": None} if has_ct else {"brightness": None}
    watts = entity.number("wattage_w")
    track = st.track(entity, "off", off)
    lux = st.room_lux.setdefault(entity.room, [])
    for start, end in _on_intervals(entity, st, rng):
        t = start
        while t < end:
            stop = min(end, t + rng.uniform(1200.0, 2700.0))
            hour = (t % DAY_S) / HOUR_S
            pct = _brightness_pct(rng, low, high, hour)
            attrs: dict[str, AttrValue] = {"brightness": pct_to_brightness(pct)}
            if has_ct:
                attrs["color_temp"] = _mireds(rng, mireds, hour)
            track.set(t, "on", attrs)
            st.loads.append((t, stop, watts * pct / 100.0))
            lux.append((t, stop, _LUX_PER_PCT * pct))
            t = stop
        track.set(end, "off", off)
    return track


def _on_intervals(entity: Entity, st: HomeState, rng: random.Random) -> list[Interval]:
    act, thing = st.activity, thing_of(entity, st.home.home_id)
    if thing == "path":
        days = range(-1, len(act.plans))
        dusk = [
            (d * DAY_S + act.sunset_s - rng.uniform(0.0, 900.0), (d + 1) * DAY_S + 0.5 * HOUR_S) for d in days
        ]
        return clip(merge(dusk), 0.0, act.duration_s)
    if thing == "porch":
        near = act.visits.get("garden", []) + [(t - 60.0, t + 180.0) for t in act.arrivals + act.departures]
        spans = intersect(near, act.dark)
    elif thing in AMBIENT and act.blocks.get(entity.room):
        spans = intersect(act.blocks[entity.room], act.dark_for(entity.room))
    else:
        spans = intersect(act.presence(entity.room), act.dark_for(entity.room))
    delay = rng.uniform(60.0, 180.0)
    return clip(merge(((s, e + delay) for s, e in spans), gap=120.0), 0.0, act.duration_s)


def _brightness_pct(rng: random.Random, low: int, high: int, hour: float) -> int:
    """Dim at night, softer late in the evening, bright otherwise; always within [low, high]."""
    span = high - low
    if hour < 6.0:
        share = rng.uniform(0.0, 0.2)
    elif hour >= 21.0:
        share = rng.uniform(0.3, 0.7)
    else:
        share = rng.uniform(0.6, 1.0)
    return min(high, max(low, round(low + span * share)))


def _mireds(rng: random.Random, bounds: tuple[int, int], hour: float) -> int:
    """Warm white (high mireds) in the evening and at night, cooler by day."""
    low, high = bounds
    span = high - low
    if hour < 6.0 or hour >= 20.0:
        return round(high - span * rng.uniform(0.0, 0.25))
    return round(low + span * rng.uniform(0.3, 0.6))
