"""The dynamic trace of one home: every entity's state changes over the scenario.

``home_trace`` runs in two phases. Actuators first (lights, switches, covers, media players, locks,
binary sensors), each recording what it did into a shared ``HomeState`` (electrical loads, light in
a room, closed blinds). Then the measuring side (sensors, thermostats) samples physics plus those
records, so a power meter sees the coffee maker the switch turned on and the living-room
illuminance rises when its lamp does.

Each entity draws from its own ``random.Random`` seeded with ``"<seed>/<entity_id>"`` (string seeds
are hashed with SHA-512, not the salted ``hash()``), so adding a device to one room does not
change the trace of any other device.
"""

from __future__ import annotations

from shared.scenario.activity import Activity
from shared.scenario.actuators import ACTUATORS, emit_profile
from shared.scenario.model import Home, StateChange
from shared.scenario.sensors import measure
from shared.scenario.track import HomeState


def home_trace(home: Home, activity: Activity, seed: int) -> list[StateChange]:
    """All changes of one home's entities (each entity's in time order; not sorted across them)."""
    state = HomeState(home, activity, seed)
    changes = emit_profile(home.profile, state).changes
    for domain, emit in ACTUATORS.items():
        for entity in home.entities:
            if entity.domain == domain:
                changes += emit(entity, state).changes
    changes += measure(home, state)
    return changes
