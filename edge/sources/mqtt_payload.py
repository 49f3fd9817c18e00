"""MQTT payloads → (state, attributes): pure functions, strict limits, one typed rejection.

Three payload styles are understood:

- ``zigbee2mqtt``: a flat JSON object, ``{"state": "ON", "brightness": 180, "linkquality": 90}``.
  Without ``fields`` the state comes from ``state`` and every other top-level scalar (or list of
  scalars) becomes an attribute; nested objects (``color``, ``update``) are skipped.
- ``tasmota``: nested JSON, ``tele/x/SENSOR`` → ``{"ENERGY": {"Power": 45, "Total": 1.2}}``,
  addressed with dotted paths (``ENERGY.Power``). Without a field mapped to ``state`` the state
  comes from ``POWER``.
- ``plain``: the payload is the bare state (``ON``, ``21.5``).

``MqttTopic.fields`` maps payload key (a dotted path) → entity attribute, ``state`` for the main
state; when it names attributes, only those are taken. ``ON``/``OFF`` (any case) and JSON booleans
become ``on``/``off``; numbers become their text, and zero is a state like any other.

Everything else raises :class:`PayloadRejected` with a stable ``kind`` the source counts; messages
name fields and limits, never the payload's bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Final

from edge.readings import AttrValue, IngestError, Scalar
from shared.config.edge import MqttTopic

MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_STATE_CHARS: Final = 255
MAX_ATTR_STRING: Final = 4096
MAX_ATTRIBUTES: Final = 256
MAX_LIST: Final = 256
DEFAULT_STATE_PATH: Final = {"zigbee2mqtt": "state", "tasmota": "POWER"}

KINDS: Final = ("too_large", "not_text", "not_json", "wrong_type", "missing_state", "unknown_topic")


class PayloadRejected(IngestError):
    """A payload that cannot become a reading; ``kind`` is one of :data:`KINDS`."""

    _STATUS: Final = {"too_large": 413, "unknown_topic": 404}

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message, status=self._STATUS.get(kind, 400))
        self.kind = kind


def decode(route: MqttTopic, payload: bytes) -> tuple[str, dict[str, AttrValue]]:
    """The entity state and attributes ``route`` reads from ``payload``; PayloadRejected if unusable."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadRejected("too_large", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadRejected("not_text", "payload is not UTF-8 text") from None
    if route.style == "plain":
        return _state(text.strip(), "payload"), {}
    document = _parse_json(text)
    state_path = next((k for k, v in route.fields.items() if v == "state"), DEFAULT_STATE_PATH[route.style])
    state = _state(_lookup(document, state_path), state_path)
    wanted = {k: v for k, v in route.fields.items() if v != "state"}
    if wanted:
        return state, _mapped_attributes(document, wanted)
    if route.style == "zigbee2mqtt":
        return state, _flat_attributes(document, state_path)
    return state, {}


def _parse_json(text: str) -> Mapping[str, object]:
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise PayloadRejected("not_json", "payload is not valid JSON") from None
    if not isinstance(document, dict):
        raise PayloadRejected("wrong_type", f"payload is JSON {type(document).__name__}, expected an object")
    return document


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed")


def _lookup(document: Mapping[str, object], path: str) -> object:
    """``document[path]`` if that key exists literally, else a walk along the dots; None if absent."""
    if path in document:
        return document[path]
    node: object = document
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _state(value: object, where: str) -> str:
    if value is None or value == "":
        raise PayloadRejected("missing_state", f"no state at {where[:64]!r}")
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)  # 0 and 0.0 are states, never "missing"
    if not isinstance(value, str):
        raise PayloadRejected("wrong_type", f"state at {where[:64]!r} is a {type(value).__name__}")
    if len(value) > MAX_STATE_CHARS:
        raise PayloadRejected("wrong_type", f"state at {where[:64]!r} is longer than {MAX_STATE_CHARS}")
    return value.lower() if value.upper() in ("ON", "OFF") else value


def _mapped_attributes(document: Mapping[str, object], wanted: Mapping[str, str]) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    for path, attribute in wanted.items():
        value = _lookup(document, path)
        if value is None:
            continue  # devices publish partial updates; a missing attribute is not an error
        attr = _attribute(value)
        if isinstance(attr, _NotScalar):
            raise PayloadRejected("wrong_type", f"field {path[:64]!r} is a {type(value).__name__}")
        out[attribute] = attr
    return out


def _flat_attributes(document: Mapping[str, object], state_key: str) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    for key, value in document.items():
        if key == state_key or len(out) >= MAX_ATTRIBUTES or not 0 < len(key) <= 64:
            continue
        attr = _attribute(value)
        if not isinstance(attr, _NotScalar):  # nested objects (color, update) are skipped
            out[key] = attr
    return out


class _NotScalar:
    """Marks a JSON value that is no scalar (None is a valid attribute value, so it cannot be)."""


_NOT_SCALAR: Final = _NotScalar()


def _attribute(value: object) -> AttrValue | _NotScalar:
    if isinstance(value, list):
        if len(value) > MAX_LIST:
            return _NOT_SCALAR
        items: list[Scalar] = []
        for item in value:
            scalar = _scalar(item)
            if isinstance(scalar, _NotScalar):
                return _NOT_SCALAR
            items.append(scalar)
        return tuple(items)
    return _scalar(value)


def _scalar(value: object) -> Scalar | _NotScalar:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NOT_SCALAR
    if isinstance(value, str) and len(value) <= MAX_ATTR_STRING:
        return value
    return _NOT_SCALAR
