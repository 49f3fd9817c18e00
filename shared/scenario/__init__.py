"""Seeded, deterministic smart-home scenarios: homes, static facts and a dynamic state trace.

``generate(seed)`` builds a world of Home Assistant style homes; ``Scenario`` holds it (static
facts with sensitivity flags, a time-sorted trace of state changes) and serialises it canonically;
``shared.scenario.hass`` reads and writes HA state objects. Stdlib only.
"""

from shared.scenario.generate import MAX_DURATION_S, MAX_HOMES, generate
from shared.scenario.hass import (
    ENTITY_ID_RE,
    change_from_state_object,
    from_state_object,
    state_objects,
    to_state_object,
    ts_seconds,
)
from shared.scenario.model import (
    DEFAULT_START_ISO,
    DOMAINS,
    AttrValue,
    Domain,
    Entity,
    FactValue,
    Home,
    Scenario,
    Sensitivity,
    StateChange,
    StaticFact,
    brightness_to_pct,
    pct_to_brightness,
)

__all__ = [
    "DEFAULT_START_ISO",
    "DOMAINS",
    "ENTITY_ID_RE",
    "MAX_DURATION_S",
    "MAX_HOMES",
    "AttrValue",
    "Domain",
    "Entity",
    "FactValue",
    "Home",
    "Scenario",
    "Sensitivity",
    "StateChange",
    "StaticFact",
    "brightness_to_pct",
    "change_from_state_object",
    "from_state_object",
    "generate",
    "pct_to_brightness",
    "state_objects",
    "to_state_object",
    "ts_seconds",
]
