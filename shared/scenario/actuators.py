"""The registry of actuator-side emitters (phase one of a home's trace) and the home profile.

Order matters: covers run before binary sensors because the garage-door contact mirrors the
garage door, and everything that draws power runs before the meters in phase two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from shared.scenario.appliances import emit_media, emit_switch
from shared.scenario.lights import emit_light
from shared.scenario.model import Entity
from shared.scenario.openings import emit_binary, emit_cover, emit_lock
from shared.scenario.track import HomeState, Track

ACTUATORS: Final[dict[str, Callable[[Entity, HomeState], Track]]] = {
    "light": emit_light,
    "switch": emit_switch,
    "cover": emit_cover,
    "media_player": emit_media,
    "lock": emit_lock,
    "binary_sensor": emit_binary,
}


def emit_profile(entity: Entity, st: HomeState) -> Track:
    """The profile pseudo-entity reports presence: ``home``/``away`` and how many are in."""
    occupants = entity.integer("household_size")
    act = st.activity
    track = st.track(entity, "away", {"occupants_home": 0})
    for start, end in act.home:
        track.set(start, "home", {"occupants_home": occupants})
        track.set(end, "away", {"occupants_home": 0})
    return track
