"""Home Assistant state objects: write them from the trace, read them strictly from anywhere.

A state object is what HA's REST API (``GET /api/states``) and websocket ``state_changed`` events
carry::

    {"entity_id": "light.home1_kitchen_ceiling", "state": "on",
     "attributes": {"brightness": 180, "color_temp": 370},
     "last_changed": "2026-06-01T19:02:11.250000+00:00", "last_updated": "..."}

``from_state_object`` is a trust boundary (a real HA instance or anything pretending to be one):
it checks every field and raises ScenarioError naming the field, never echoing more than 60
characters of the input. Sensitive facts never appear here: they are device-local configuration,
and the trace only carries public static attributes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

from shared.errors import ScenarioError
from shared.scenario.model import DEFAULT_START_ISO, AttrValue, Scalar, Scenario, StateChange

ENTITY_ID_RE: Final = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
MAX_ENTITY_ID: Final = 255
MAX_STATE: Final = 255
MAX_ATTRIBUTES: Final = 256
MAX_ATTR_KEY: Final = 255
MAX_ATTR_STRING: Final = 4096
MAX_LIST: Final = 256
MAX_TIMESTAMP: Final = 64
_PREVIEW: Final = 60

HassObject = dict[str, object]
Parsed = tuple[str, str, dict[str, AttrValue], datetime]


def start_time(start_iso: str = DEFAULT_START_ISO) -> datetime:
    """The scenario's time origin as an aware UTC datetime."""
    return _timestamp(start_iso, "start_iso")


def to_state_object(
    change: StateChange, start_iso: str = DEFAULT_START_ISO, *, last_changed_s: float | None = None
) -> HassObject:
    """The HA state object after ``change``; ``last_changed_s`` when the state itself last changed."""
    return _state_object(change, start_time(start_iso), last_changed_s)


def _state_object(change: StateChange, start: datetime, last_changed_s: float | None) -> HassObject:
    updated = _iso(start, change.ts_s)
    return {
        "entity_id": change.entity_id,
        "state": change.state,
        "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in change.attributes.items()},
        "last_changed": updated if last_changed_s is None else _iso(start, last_changed_s),
        "last_updated": updated,
    }


def state_objects(scenario: Scenario) -> Iterator[HassObject]:
    """The trace as HA state objects, in order; ``last_changed`` stays put on attribute-only changes."""
    start = start_time(scenario.start_iso)
    changed_at: dict[str, tuple[str, float]] = {}
    for change in scenario.trace:
        previous = changed_at.get(change.entity_id)
        since = previous[1] if previous is not None and previous[0] == change.state else change.ts_s
        changed_at[change.entity_id] = (change.state, since)
        yield _state_object(change, start, since)


def from_state_object(obj: Mapping[str, object]) -> Parsed:
    """Validate one state object; returns (entity_id, state, attributes, updated-at as UTC).

    The time is ``last_updated`` when present (it moves on attribute changes), else
    ``last_changed``; both must be ISO 8601 with a timezone. List attributes come back as tuples.
    """
    if not isinstance(obj, Mapping):
        raise ScenarioError(f"state object: expected a mapping, got {type(obj).__name__}")
    entity_id = _required_str(obj, "entity_id", MAX_ENTITY_ID)
    if not ENTITY_ID_RE.match(entity_id):
        raise ScenarioError(f"state object field 'entity_id': not <domain>.<object_id> {_preview(entity_id)}")
    state = _required_str(obj, "state", MAX_STATE)
    attributes = _attributes(obj.get("attributes", _MISSING))
    changed = _timestamp(_required_str(obj, "last_changed", MAX_TIMESTAMP), "last_changed")
    updated = changed
    if "last_updated" in obj:
        updated = _timestamp(_required_str(obj, "last_updated", MAX_TIMESTAMP), "last_updated")
    return entity_id, state, attributes, updated


def change_from_state_object(obj: Mapping[str, object], start_iso: str = DEFAULT_START_ISO) -> StateChange:
    """``from_state_object`` as a StateChange whose ``ts_s`` counts from ``start_iso`` (ms precision)."""
    entity_id, state, attributes, when = from_state_object(obj)
    return StateChange(ts_seconds(when, start_iso), entity_id, state, attributes)


def ts_seconds(when: datetime, start_iso: str = DEFAULT_START_ISO) -> float:
    return round((when - start_time(start_iso)).total_seconds(), 3)


class _Missing:
    pass


_MISSING: Final = _Missing()


def _required_str(obj: Mapping[str, object], field: str, limit: int) -> str:
    if field not in obj:
        raise ScenarioError(f"state object field {field!r}: missing")
    value = obj[field]
    if not isinstance(value, str):
        raise ScenarioError(f"state object field {field!r}: expected a string, got {type(value).__name__}")
    if len(value) > limit:
        raise ScenarioError(f"state object field {field!r}: longer than {limit} characters")
    return value


def _attributes(value: object) -> dict[str, AttrValue]:
    if isinstance(value, _Missing):
        raise ScenarioError("state object field 'attributes': missing")
    if not isinstance(value, Mapping):
        raise ScenarioError(
            f"state object field 'attributes': expected an object, got {type(value).__name__}"
        )
    if len(value) > MAX_ATTRIBUTES:
        raise ScenarioError(f"state object field 'attributes': more than {MAX_ATTRIBUTES} entries")
    out: dict[str, AttrValue] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_ATTR_KEY:
            raise ScenarioError(f"state object field 'attributes': bad key {_preview(key)}")
        where = f"attributes.{key[:_PREVIEW]}"
        if isinstance(item, list | tuple):
            if len(item) > MAX_LIST:
                raise ScenarioError(f"state object field {where!r}: list longer than {MAX_LIST}")
            out[key] = tuple(_scalar(v, where) for v in item)
        else:
            out[key] = _scalar(item, where)
    return out


def _scalar(value: object, where: str) -> Scalar:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ScenarioError(f"state object field {where!r}: number must be finite")
        return value
    if isinstance(value, str):
        if len(value) > MAX_ATTR_STRING:
            raise ScenarioError(f"state object field {where!r}: string longer than {MAX_ATTR_STRING}")
        return value
    raise ScenarioError(
        f"state object field {where!r}: expected a JSON scalar or list, got {type(value).__name__}"
    )


def _timestamp(text: str, field: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ScenarioError(f"state object field {field!r}: not ISO 8601 {_preview(text)}") from None
    if when.tzinfo is None:
        raise ScenarioError(f"state object field {field!r}: timestamp has no timezone {_preview(text)}")
    return when.astimezone(UTC)


def _iso(start: datetime, ts_s: float) -> str:
    return (start + timedelta(seconds=ts_s)).isoformat()


def _preview(value: object) -> str:
    text = repr(value)
    return f"(got {text if len(text) <= _PREVIEW else text[: _PREVIEW - 3] + '...'})"
