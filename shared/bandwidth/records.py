"""Typed bandwidth-log records and the validation of one decoded JSON line (schema version 1).

:func:`parse_record` turns one decoded JSON value into a :class:`MessageRecord` or a
:class:`KernelSample`, or raises :class:`RecordError` (invalid for version 1) /
:class:`NewerSchemaError` (written by a newer writer; the reader skips it). Fields the reader does
not use (``rid``) are not required; unknown extra fields are ignored, as a version-1 reader should.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

SCHEMA_VERSION = 1
KERNEL_TYPE = "tcp_info"
SIDES = ("edge", "gateway")
DIRECTIONS = ("in", "out")
KERNEL_EVENTS = ("sample", "close")

Side = Literal["edge", "gateway"]
Direction = Literal["in", "out"]
KernelEvent = Literal["sample", "close"]


class RecordError(ValueError):
    """A line that is JSON but not a valid version-1 record; the message names the field."""


class NewerSchemaError(RecordError):
    """A record of a schema version newer than this reader understands."""

    def __init__(self, version: int) -> None:
        self.version = version
        super().__init__(f"schema version {version} is newer than this reader's ({SCHEMA_VERSION}): skipped")


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message that crossed the wire, as one side logged it."""

    ts: float
    side: Side
    tenant: str
    twin: str
    direction: Direction
    type: str
    payload: int
    compressed: int
    frame: int


@dataclass(frozen=True, slots=True)
class KernelCounters:
    """Cumulative TCP_INFO counters of one connection. ``bytes_acked`` and ``bytes_received`` are
    always there; the others are None where the writer's kernel does not have them (``bytes_sent``
    and ``bytes_retrans`` need Linux 4.19), and stay None through sums and differences."""

    bytes_acked: int = 0
    bytes_received: int = 0
    bytes_sent: int | None = 0
    bytes_retrans: int | None = 0
    segs_out: int | None = 0
    segs_in: int | None = 0

    def __add__(self, other: KernelCounters) -> KernelCounters:
        return self._combine(other, 1)

    def __sub__(self, other: KernelCounters) -> KernelCounters:
        return self._combine(other, -1)

    def _combine(self, other: KernelCounters, sign: int) -> KernelCounters:
        def op(a: int | None, b: int | None) -> int | None:
            return None if a is None or b is None else a + sign * b

        return KernelCounters(
            self.bytes_acked + sign * other.bytes_acked,
            self.bytes_received + sign * other.bytes_received,
            op(self.bytes_sent, other.bytes_sent),
            op(self.bytes_retrans, other.bytes_retrans),
            op(self.segs_out, other.segs_out),
            op(self.segs_in, other.segs_in),
        )

    def values(self) -> tuple[int | None, ...]:
        return (self.bytes_acked, self.bytes_received, self.bytes_sent, self.bytes_retrans, self.segs_out, self.segs_in)

    def went_backwards(self, earlier: KernelCounters) -> bool:
        """True when a counter known in both is below ``earlier``'s: a new connection reusing the id."""
        pairs = zip(self.values(), earlier.values(), strict=True)
        return any(a is not None and b is not None and a < b for a, b in pairs)


@dataclass(frozen=True, slots=True)
class KernelSample:
    """A kernel TCP_INFO sample of one connection (``"type": "tcp_info"``)."""

    ts: float
    side: Side
    tenant: str
    conn: str
    event: KernelEvent
    counters: KernelCounters


Record = MessageRecord | KernelSample

_OPTIONAL_COUNTERS = ("bytes_sent", "bytes_retrans", "segs_out", "segs_in")  # missing or null: unknown


def parse_record(obj: object) -> Record:
    """Validate one decoded JSON value as a version-1 record."""
    if not isinstance(obj, dict):
        raise RecordError(f"not a JSON object but {_json_kind(obj)}")
    version = obj.get("v")
    if version is None:
        raise RecordError("no schema version ('v')")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RecordError(f"'v' must be an integer, got {_short(version)}")
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(version)
    if version < SCHEMA_VERSION:
        raise RecordError(f"unknown schema version {version}")
    ts = _number(obj, "ts")
    side = cast(Side, _choice(obj, "side", SIDES))
    tenant = _string(obj, "tenant")
    msg_type = _string(obj, "type")
    if msg_type == KERNEL_TYPE:
        conn = obj.get("conn")
        if isinstance(conn, int) and not isinstance(conn, bool):
            conn = str(conn)
        if not isinstance(conn, str) or not conn:
            raise RecordError(f"'conn' must be a non-empty string, got {_short(conn)}")
        event = cast(KernelEvent, _choice(obj, "event", KERNEL_EVENTS))
        sent, retrans, segs_out, segs_in = (_optional_count(obj, name) for name in _OPTIONAL_COUNTERS)
        counters = KernelCounters(
            _count(obj, "bytes_acked"), _count(obj, "bytes_received"), sent, retrans, segs_out, segs_in
        )
        return KernelSample(ts, side, tenant, conn, event, counters)
    return MessageRecord(
        ts,
        side,
        tenant,
        _string(obj, "twin", allow_empty=True),  # "" on replies and on messages about no twin (PING, FETCH)
        cast(Direction, _choice(obj, "dir", DIRECTIONS)),
        msg_type,
        _count(obj, "payload"),
        _count(obj, "compressed"),
        _count(obj, "frame"),
    )


def _number(obj: dict[str, object], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordError(f"'{key}' must be a finite number, got {_short(value)}" if key in obj else f"no '{key}'")
    return float(value)


def _count(obj: dict[str, object], key: str) -> int:
    if key not in obj:
        raise RecordError(f"no '{key}'")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordError(f"'{key}' must be a non-negative integer, got {_short(value)}")
    return value


def _optional_count(obj: dict[str, object], key: str) -> int | None:
    return None if obj.get(key) is None else _count(obj, key)


def _string(obj: dict[str, object], key: str, *, allow_empty: bool = False) -> str:
    if key not in obj:
        raise RecordError(f"no '{key}'")
    value = obj[key]
    if not isinstance(value, str) or not (value or allow_empty):
        raise RecordError(f"'{key}' must be a non-empty string, got {_short(value)}")
    return value


def _choice(obj: dict[str, object], key: str, allowed: tuple[str, ...]) -> str:
    value = _string(obj, key)
    if value not in allowed:
        raise RecordError(f"'{key}' must be one of {', '.join(allowed)}, got {_short(value)}")
    return value


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a number" if isinstance(value, int | float) and not isinstance(value, bool) else "a boolean"


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
