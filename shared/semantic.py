"""The semantic state prompt: a compact text form of entity states, shared by edge and gateway.

The edge's compressor writes it (only what changed beyond a deadband, quantised), the gateway
stores it, rebuilds per-entity state from it and renders that state as readable context for the
model. The wire form is terse; the readable form is made at the gateway, where bytes are free.

Format (UTF-8, one record per line)::

    K                      first line: K = keyframe (the full state), D = delta since the last prompt
    L.kitchen_ceiling + b=115
    S.living_room_temperature 21.3
    K.front_door L
    M.living_room_tv P src=Radio%20One
    B.hallway_motion ~      "~": the entity became unavailable / was removed

A record is ``<domain code>.<object> <state> [<attr code>=<value> ...]``. The object is the entity's
object id with the twin's prefix (``home1_``) removed; a ``!`` after the domain code marks an object
id that did not carry the prefix (``L!porch_lamp``). States and attributes use the code tables
below when they have a code, else the literal text with ``%``-escaping of space, ``=``, ``%`` and
line breaks. Numbers are written in their shortest form (``21.3``, ``115``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote

from shared.errors import SemanticError

Value = str | int | float | None
Kind = Literal["K", "D"]

DOMAIN_CODES: Mapping[str, str] = {
    "light": "L",
    "climate": "C",
    "lock": "K",
    "binary_sensor": "B",
    "sensor": "S",
    "switch": "W",
    "cover": "V",
    "media_player": "M",
    "fan": "F",
    "vacuum": "R",
    "device_tracker": "T",
}
STATE_CODES: Mapping[str, str] = {
    "on": "+",
    "off": "-",
    "locked": "L",
    "unlocked": "U",
    "open": "O",
    "closed": "C",
    "opening": "o",
    "closing": "c",
    "playing": "P",
    "paused": "Z",
    "idle": "I",
    "standby": "S",
    "heat": "H",
    "cool": "Q",
    "auto": "A",
    "home": "h",
    "not_home": "n",
    "unknown": "?",
}
ATTR_CODES: Mapping[str, str] = {
    "brightness": "b",
    "color_temp": "k",
    "temperature": "t",
    "current_temperature": "ct",
    "target_temp_low": "tl",
    "target_temp_high": "th",
    "hvac_action": "ha",
    "humidity": "h",
    "current_position": "pos",
    "volume_level": "vol",
    "source": "src",
    "media_title": "mt",
    "power": "p",
    "energy": "e",
    "battery": "bat",
    "illuminance": "lx",
}
UNAVAILABLE = "~"
# what a ``sensor.*`` measures, read from device_class or the id's last word ("..._kitchen_temperature")
SENSOR_QUANTITIES = ("temperature", "humidity", "illuminance", "power", "energy", "battery", "pressure", "co2")

_DOMAIN_NAMES = {v: k for k, v in DOMAIN_CODES.items()}
_STATE_NAMES = {v: k for k, v in STATE_CODES.items()}
_ATTR_NAMES = {v: k for k, v in ATTR_CODES.items()}
_OBJECT_RE = re.compile(r"[a-z0-9_]+")
_NUMBER_RE = re.compile(r"-?[0-9]*\.?[0-9]+(e[-+]?[0-9]+)?")
_SAFE = "!#$&'()*+,-./:;<>?@[]^_`{|}~"  # kept literally by quote(); space, =, % and newlines are escaped


@dataclass(frozen=True, slots=True)
class EntityState:
    """One entity's state as a prompt carries it. ``state is None`` means unavailable."""

    entity_id: str
    state: str | None
    attributes: tuple[tuple[str, Value], ...] = ()

    def attrs(self) -> dict[str, Value]:
        return dict(self.attributes)


@dataclass(frozen=True, slots=True)
class Prompt:
    kind: Kind
    states: tuple[EntityState, ...]


def object_prefix(twin_id: str) -> str:
    """The prefix the twin's entity object ids carry (``home1`` → ``home1_``)."""
    return re.sub(r"[^a-z0-9_]", "_", twin_id) + "_"


# ------------------------------------------------------------------------------------------------
# encoding


def encode_prompt(kind: Kind, states: Iterable[EntityState], twin_id: str) -> str:
    prefix = object_prefix(twin_id)
    lines: list[str] = [kind]
    lines.extend(_encode_record(s, prefix) for s in states)
    return "\n".join(lines)


def _encode_record(s: EntityState, prefix: str) -> str:
    domain, _, obj = s.entity_id.partition(".")
    code = DOMAIN_CODES.get(domain)
    if code is None or not obj or _OBJECT_RE.fullmatch(obj) is None:
        raise SemanticError(f"entity id {s.entity_id[:60]!r} is not <known domain>.<object id>")
    head = f"{code}.{obj[len(prefix) :]}" if obj.startswith(prefix) else f"{code}!{obj}"
    if s.state is None:
        return f"{head} {UNAVAILABLE}"
    parts = [head, STATE_CODES.get(s.state) or _escape(s.state, reserved=_STATE_NAMES)]
    for name, value in s.attributes:
        if value is None:
            continue
        parts.append(f"{ATTR_CODES.get(name) or _escape(name, reserved=_ATTR_NAMES)}={format_value(value)}")
    return " ".join(parts)


def format_value(value: Value) -> str:
    """Numbers in their shortest exact-enough form; strings escaped."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SemanticError("non-finite value in a prompt")
        text = f"{value:.6g}"
        return text[:-2] if text.endswith(".0") else text
    if value is None:
        return ""
    return _escape(value)


def _escape(text: str, reserved: Mapping[str, str] | None = None) -> str:
    """%-escape; a literal that would read as a code or a number gets its first character escaped."""
    if not text:
        return "%00"  # the empty string, kept distinguishable from a missing token
    quoted = quote(text, safe=_SAFE)
    looks_special = quoted == UNAVAILABLE or (reserved is not None and quoted in reserved)
    if looks_special or (reserved is None and _NUMBER_RE.fullmatch(quoted)):
        return f"%{ord(quoted[0]):02X}{quoted[1:]}"
    return quoted


# ------------------------------------------------------------------------------------------------
# decoding


def decode_prompt(text: str, twin_id: str) -> Prompt:
    """Parse a prompt; SemanticError names the line that does not fit the format."""
    lines = text.split("\n")
    kind = lines[0].strip()
    if kind not in ("K", "D"):
        raise SemanticError("line 1: a prompt starts with K (keyframe) or D (delta)")
    prefix = object_prefix(twin_id)
    states = [_decode_record(line, prefix, n) for n, line in enumerate(lines[1:], start=2) if line.strip()]
    return Prompt(kind, tuple(states))  # type: ignore[arg-type]


def _decode_record(line: str, prefix: str, n: int) -> EntityState:
    tokens = line.split(" ")
    if len(tokens) < 2:
        raise SemanticError(f"line {n}: expected '<entity> <state> [attr=value ...]'")
    entity_id = _decode_entity(tokens[0], prefix, n)
    if tokens[1] == UNAVAILABLE:
        return EntityState(entity_id, None)
    state = _STATE_NAMES.get(tokens[1]) or _unescape(tokens[1])
    attrs: list[tuple[str, Value]] = []
    for token in tokens[2:]:
        name, sep, raw = token.partition("=")
        if not sep or not name:
            raise SemanticError(f"line {n}: attribute without '='")
        attrs.append((_ATTR_NAMES.get(name) or _unescape(name), parse_value(raw)))
    return EntityState(entity_id, state, tuple(attrs))


def _decode_entity(token: str, prefix: str, n: int) -> str:
    match = re.fullmatch(r"([A-Z])([.!])([a-z0-9_]+)", token)
    if match is None or match.group(1) not in _DOMAIN_NAMES:
        raise SemanticError(f"line {n}: not an entity reference")
    code, mark, obj = match.groups()
    return f"{_DOMAIN_NAMES[code]}.{prefix + obj if mark == '.' else obj}"


def parse_value(raw: str) -> Value:
    if re.fullmatch(r"-?[0-9]+", raw):
        return int(raw)
    if _NUMBER_RE.fullmatch(raw):
        return float(raw)
    return _unescape(raw)


def _unescape(text: str) -> str:
    return "" if text == "%00" else unquote(text)


# ------------------------------------------------------------------------------------------------
# state reconstruction and rendering (gateway side)


def apply(current: Mapping[str, EntityState], prompt: Prompt) -> dict[str, EntityState]:
    """The state after ``prompt``: a keyframe replaces everything; a delta merges attributes."""
    state: dict[str, EntityState] = {} if prompt.kind == "K" else dict(current)
    for s in prompt.states:
        before = state.get(s.entity_id)
        if before is not None and prompt.kind == "D" and s.state is not None:
            merged = before.attrs() | s.attrs()
            state[s.entity_id] = EntityState(s.entity_id, s.state, tuple(merged.items()))
        else:
            state[s.entity_id] = s
    return state


_UNITS = {
    "temperature": "°C",
    "current_temperature": "°C",
    "humidity": "%",
    "power": "W",
    "energy": "kWh",
    "illuminance": "lx",
    "battery": "%",
    "current_position": "%",
}


def render(states: Iterable[EntityState], twin_id: str) -> str:
    """Readable lines for the model's context: ``kitchen ceiling (light): on, brightness 45%``."""
    prefix = object_prefix(twin_id)
    return "\n".join(_render_one(s, prefix) for s in sorted(states, key=lambda s: s.entity_id))


def _render_one(s: EntityState, prefix: str) -> str:
    domain, _, obj = s.entity_id.partition(".")
    name = obj.removeprefix(prefix).replace("_", " ")
    if s.state is None:
        return f"{name} ({domain.replace('_', ' ')}): unavailable"
    parts = [s.state.replace("_", " ")]
    for attr, value in s.attributes:
        if value is None:
            continue
        if attr == "brightness" and isinstance(value, int | float):
            parts.append(f"brightness {round(value * 100 / 255)}%")
            continue
        text = value if isinstance(value, str) else format_value(value)
        parts.append(f"{attr.replace('_', ' ')} {text}{_UNITS.get(attr, '')}")
    return f"{name} ({domain.replace('_', ' ')}): " + ", ".join(parts)


def merge_deltas(texts: Iterable[str], twin_id: str) -> str:
    """One delta equivalent to applying ``texts`` (deltas, oldest first) in order."""
    merged: dict[str, EntityState] = {}
    for text in texts:
        prompt = decode_prompt(text, twin_id)
        if prompt.kind != "D":
            raise SemanticError("only deltas can be merged; a keyframe supersedes them instead")
        merged = apply(merged, prompt)
    return encode_prompt("D", [merged[k] for k in sorted(merged)], twin_id)
