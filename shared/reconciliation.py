"""Kernel vs message model, the arithmetic of :mod:`shared.kernel_accounting`'s reconciliation.

``in`` = bytes_received against the peer's half of the ZMTP/CURVE handshake + the ``frame`` bytes of the
messages logged as received; ``out`` = bytes_acked against our half + the frames logged as sent. The SYN/FIN
octets the kernel counts in sequence space are shown apart (``control``) and taken out of the difference;
bytes sent but not acknowledged yet (``unacked``) are shown, not taken out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from shared.bwlog import Side
from shared.metering import Direction


@dataclass(frozen=True, slots=True)
class Difference:
    """Kernel vs model for one direction. ``kernel`` is the raw counter (None: never sampled, or a
    field this kernel does not fill); ``control`` the SYN/FIN octets inside it."""

    kernel: int | None
    control: int
    model: int

    @property
    def absolute(self) -> int | None:
        return None if self.kernel is None else self.kernel - self.control - self.model

    @property
    def relative(self) -> float | None:
        diff = self.absolute
        return None if diff is None or self.model == 0 else diff / self.model

    def to_json(self) -> dict[str, object]:
        rel = self.relative
        return {
            "kernel": self.kernel,
            "control": self.control,
            "model": self.model,
            "absolute": self.absolute,
            "relative": None if rel is None else round(rel, 6),
        }


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """Kernel vs model for one connection (``scope="conn"``, ``key`` its id) or one tenant."""

    side: Side
    scope: Literal["conn", "tenant"]
    key: str
    tenant: str
    connections: int
    messages_in: int
    messages_out: int
    inbound: Difference  # bytes_received vs handshake (peer's half) + frames received
    outbound: Difference  # bytes_acked vs handshake (our half) + frames sent
    unacked: int | None  # sent, not acknowledged yet, at the samples
    exact: bool  # every connection's counters were read at its close (none live, none missing)

    def within(self, fraction: float) -> bool:
        """Both directions known and within ``fraction`` of the model."""
        return all(d.relative is not None and abs(d.relative) <= fraction for d in (self.inbound, self.outbound))

    def to_json(self) -> dict[str, object]:
        return {
            "side": self.side,
            "scope": self.scope,
            "key": self.key,
            "tenant": self.tenant,
            "connections": self.connections,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "in": self.inbound.to_json(),
            "out": self.outbound.to_json(),
            "unacked": self.unacked,
            "exact": self.exact,
        }


class MessageCounts(Protocol):
    """Frame bytes and message counts by direction: ``Figures`` and a kernel ``Connection`` both keep them."""

    frame_in: int
    frame_out: int
    messages_in: int
    messages_out: int


def add_message(counts: MessageCounts, direction: Direction, frame: int) -> None:
    """One message of ``frame`` wire bytes logged in ``direction``."""
    if direction == "in":
        counts.frame_in += frame
        counts.messages_in += 1
    else:
        counts.frame_out += frame
        counts.messages_out += 1


@dataclass(slots=True)
class Figures:
    """Sums over connections: kernel (raw), control octets, frames of the messages (the model)."""

    connections: int = 0
    sampled: int = 0
    kernel_in: int = 0
    kernel_out: int = 0
    kernel_in_known: bool = True
    kernel_out_known: bool = True
    control_in: int = 0
    control_out: int = 0
    frame_in: int = 0
    frame_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    unacked: int | None = 0
    exact: bool = True

    def add(self, other: Figures) -> None:
        self.connections += other.connections
        self.sampled += other.sampled
        self.kernel_in += other.kernel_in
        self.kernel_out += other.kernel_out
        self.kernel_in_known = self.kernel_in_known and other.kernel_in_known
        self.kernel_out_known = self.kernel_out_known and other.kernel_out_known
        self.control_in += other.control_in
        self.control_out += other.control_out
        self.frame_in += other.frame_in
        self.frame_out += other.frame_out
        self.messages_in += other.messages_in
        self.messages_out += other.messages_out
        self.unacked = None if self.unacked is None or other.unacked is None else self.unacked + other.unacked
        self.exact = self.exact and other.exact

    def model_json(self) -> dict[str, int]:
        return {
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "frame_in": self.frame_in,
            "frame_out": self.frame_out,
        }


def compare(
    side: Side, scope: Literal["conn", "tenant"], key: str, tenant: str, f: Figures, handshake: tuple[int, int]
) -> Reconciliation:
    """``f`` (kernel counters and logged frames) against the model: ``handshake`` (in, out) per connection
    plus the frames."""
    handshake_in, handshake_out = handshake
    inbound = Difference(
        f.kernel_in if f.kernel_in_known and f.sampled else None,
        f.control_in,
        f.connections * handshake_in + f.frame_in,
    )
    outbound = Difference(
        f.kernel_out if f.kernel_out_known and f.sampled else None,
        f.control_out,
        f.connections * handshake_out + f.frame_out,
    )
    return Reconciliation(
        side=side,
        scope=scope,
        key=key,
        tenant=tenant,
        connections=f.connections,
        messages_in=f.messages_in,
        messages_out=f.messages_out,
        inbound=inbound,
        outbound=outbound,
        unacked=f.unacked,
        exact=f.exact and f.connections > 0,
    )
