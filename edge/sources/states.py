"""Home Assistant state objects → readings, shared by the HTTP ingest and the Home Assistant source.

Validation itself is ``shared.scenario.hass.from_state_object`` (one strict reader for every place
HA-shaped JSON enters the system); this module only maps the result onto :class:`Reading`. HA's
``unavailable`` state becomes ``state=None``, the readings' single way of saying "no value now";
every other state, ``"0"`` included, is a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from edge.readings import Reading
from shared.errors import ScenarioError
from shared.scenario import from_state_object

UNAVAILABLE: Final = "unavailable"
_FIELD_RE: Final = re.compile(r"field '([^']{1,80})'")


def reading_from_state_object(obj: Mapping[str, object], source: str) -> Reading:
    """Validate ``obj`` strictly (ScenarioError naming the field) and return it as a Reading."""
    entity_id, state, attributes, updated = from_state_object(obj)
    return Reading(entity_id, None if state == UNAVAILABLE else state, attributes, updated.timestamp(), source)


def error_field(err: ScenarioError) -> str | None:
    """The state-object field a validation error names (``attributes.brightness``), if any."""
    match = _FIELD_RE.search(str(err))
    return match.group(1) if match else None
