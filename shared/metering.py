"""Byte metering: what each message costs at three layers, per tenant, direction and type.

Layers, from the application down (the kernel layer, TCP_INFO, is sampled by the transports):

- ``payload``: signature + header + *uncompressed* body, the information we meant to send;
- ``compressed``: the bytes handed to ZeroMQ (sum of frame lengths, body possibly lz4);
- ``frame``: what ZMTP 3.x puts on the TCP stream for those frames, with CURVE encryption.

ZMTP 3 frames a message part as flags (1 B) + size (1 B when the size is ≤ 255, else 8 B). CURVE
(RFC 26) sends each part as a MESSAGE command instead: ``\\x07MESSAGE`` (8 B) + short nonce (8 B)
+ box (16 B MAC + 1 B flags + the part), 33 B more than the part, and that command is itself
framed by ZMTP, with the short size form only while part + 33 ≤ 255 B. The routing-id frame a ROUTER
prepends never crosses the wire. Connection set-up is counted once per connection by
:func:`handshake_bytes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

Mechanism = Literal["null", "curve"]
Direction = Literal["in", "out"]

ZMTP_SHORT_MAX = 255
ZMTP_SHORT_HEADER = 2
ZMTP_LONG_HEADER = 9
CURVE_MESSAGE_OVERHEAD = 8 + 8 + 16 + 1  # "\x07MESSAGE", short nonce, MAC, flags byte
GREETING_BYTES = 64


def zmtp_frame_bytes(n: int) -> int:
    """Bytes on the stream for one ZMTP frame (or command) whose body is ``n`` bytes."""
    if n < 0:
        raise ValueError("frame size must be >= 0")
    return n + (ZMTP_SHORT_HEADER if n <= ZMTP_SHORT_MAX else ZMTP_LONG_HEADER)


def part_wire_bytes(n: int, mechanism: Mechanism = "curve") -> int:
    """Bytes on the stream for one message part of ``n`` bytes."""
    if mechanism == "curve":
        return zmtp_frame_bytes(n + CURVE_MESSAGE_OVERHEAD)
    return zmtp_frame_bytes(n)


def message_wire_bytes(frames: Iterable[int], mechanism: Mechanism = "curve") -> int:
    """Bytes on the stream for a multipart message with the given part sizes."""
    return sum(part_wire_bytes(n, mechanism) for n in frames)


def _metadata_bytes(props: dict[str, str]) -> int:
    """ZMTP metadata: name-length (1 B) + name + value-length (4 B) + value, per property."""
    return sum(1 + len(k) + 4 + len(v) for k, v in props.items())


def handshake_bytes(
    client_type: str = "DEALER", server_type: str = "ROUTER", mechanism: Mechanism = "curve"
) -> tuple[int, int]:
    """(client → server, server → client) bytes of greeting + handshake for one connection.

    Both peers send Socket-Type and, for DEALER/ROUTER/REQ, an empty Identity property. CURVE
    commands (RFC 26): HELLO 200 B, WELCOME 168 B, INITIATE 9+96+8 + box(16 + 32 + 16 + 80 + meta),
    READY 6+8 + box(16 + meta). NULL: READY carries the metadata in the clear.
    """
    client_meta = _metadata_bytes(_props(client_type))
    server_meta = _metadata_bytes(_props(server_type))
    if mechanism == "null":
        up = GREETING_BYTES + zmtp_frame_bytes(6 + client_meta)
        down = GREETING_BYTES + zmtp_frame_bytes(6 + server_meta)
        return up, down
    hello = zmtp_frame_bytes(200)
    welcome = zmtp_frame_bytes(168)
    initiate = zmtp_frame_bytes(9 + 96 + 8 + 16 + 32 + 16 + 80 + client_meta)
    ready = zmtp_frame_bytes(6 + 8 + 16 + server_meta)
    return GREETING_BYTES + hello + initiate, GREETING_BYTES + welcome + ready


def _props(socket_type: str) -> dict[str, str]:
    props = {"Socket-Type": socket_type}
    if socket_type in ("DEALER", "ROUTER", "REQ"):
        props["Identity"] = ""
    return props


# ------------------------------------------------------------------------------------------------
# accumulation


@dataclass(frozen=True, slots=True)
class MeterKey:
    tenant: str
    direction: Direction
    type: str


@dataclass(slots=True)
class Counters:
    messages: int = 0
    payload: int = 0
    compressed: int = 0
    frame: int = 0

    def add(self, other: Counters) -> None:
        self.messages += other.messages
        self.payload += other.payload
        self.compressed += other.compressed
        self.frame += other.frame


@dataclass(frozen=True, slots=True)
class Sample:
    """One message's bytes at each layer."""

    payload: int
    compressed: int
    frame: int

    @classmethod
    def of(cls, payload: int, frames: Iterable[int], mechanism: Mechanism = "curve") -> Sample:
        sizes = list(frames)
        return cls(payload, sum(sizes), message_wire_bytes(sizes, mechanism))


class ByteMeter:
    """Counters keyed by (tenant, direction, message type). Single-threaded: owned by one loop."""

    def __init__(self) -> None:
        self._rows: dict[MeterKey, Counters] = {}

    def record(self, tenant: str, direction: Direction, msg_type: str, sample: Sample) -> None:
        row = self._rows.setdefault(MeterKey(tenant, direction, msg_type), Counters())
        row.add(Counters(1, sample.payload, sample.compressed, sample.frame))

    def rows(self) -> Iterator[tuple[MeterKey, Counters]]:
        for key in sorted(self._rows, key=lambda k: (k.tenant, k.direction, k.type)):
            c = self._rows[key]
            yield key, Counters(c.messages, c.payload, c.compressed, c.frame)

    def total(self, *, tenant: str | None = None, direction: Direction | None = None) -> Counters:
        out = Counters()
        for key, c in self._rows.items():
            if (tenant is None or key.tenant == tenant) and (direction is None or key.direction == direction):
                out.add(c)
        return out
