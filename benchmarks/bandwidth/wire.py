"""Byte counts of one connection, the client's view (model, kernel, relay), and the timeline of when they
were charged to the trace."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from shared.tcpinfo import TcpCounters, control_octets


@dataclass(slots=True)
class Wire:
    """Bytes of one connection (or a sum), the client's view: up = client → server."""

    model_up: int = 0
    model_down: int = 0
    kernel_up: int = 0
    kernel_down: int = 0
    relay_up: int = 0
    relay_down: int = 0
    messages: int = 0  # requests sent (each answered)

    @property
    def model(self) -> int:
        return self.model_up + self.model_down

    @property
    def kernel(self) -> int:
        return self.kernel_up + self.kernel_down

    @property
    def relay(self) -> int:
        return self.relay_up + self.relay_down

    def __add__(self, other: Wire) -> Wire:
        return Wire(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))

    def __sub__(self, other: Wire) -> Wire:
        return Wire(*(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))

    def times(self, k: int) -> Wire:
        return Wire(*(k * a for a in dataclasses.astuple(self)))

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "kernel": self.kernel,
            "relay": self.relay,
            "model_up": self.model_up,
            "model_down": self.model_down,
            "kernel_up": self.kernel_up,
            "kernel_down": self.kernel_down,
            "relay_up": self.relay_up,
            "relay_down": self.relay_down,
            "messages": self.messages,
            "kernel_vs_model_error": round(error(self), 6),
        }


def error(wire: Wire) -> float:
    """|kernel - model| / kernel."""
    return abs(wire.kernel - wire.model) / wire.kernel if wire.kernel else math.inf


def kernel_stream(counters: TcpCounters) -> tuple[int, int]:
    """(up, down) stream bytes of the connecting side: bytes_acked / bytes_received less SYN/FIN."""
    if counters.bytes_acked is None or counters.bytes_received is None:
        raise OSError("this kernel's TCP_INFO has no bytes_acked / bytes_received")
    control_in, control_out = control_octets(counters.state, connecting=True)
    return counters.bytes_acked - control_out, counters.bytes_received - control_in


@dataclass(slots=True)
class Timeline:
    """Model bytes charged to trace times, for the cumulative curves."""

    events: list[tuple[float, int]] = field(default_factory=list)

    def add(self, ts_s: float, nbytes: int) -> None:
        self.events.append((ts_s, nbytes))

    def extend(self, other: Timeline) -> None:
        self.events.extend(other.events)

    def cumulative(self, start_epoch: float, duration_s: float, step_s: float = 3600.0) -> list[list[float]]:
        """``[[epoch_s, cumulative_bytes], ...]`` at 0, step, 2 step, ... and the end."""
        marks = [k * step_s for k in range(math.ceil(duration_s / step_s))] + [duration_s]
        events = sorted(self.events)
        points, total, i = [], 0, 0
        for mark in marks:
            while i < len(events) and events[i][0] <= mark:
                total += events[i][1]
                i += 1
            points.append([round(start_epoch + mark, 3), float(total)])
        return points
