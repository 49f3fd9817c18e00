"""What every sensor source produces: readings of entity state, and the typed failure they raise.

A source turns its input (a simulated trace, MQTT payloads, HTTP posts, Home Assistant events, the
host's /sys and /proc) into :class:`Reading` objects and hands them to a sink. It never decides what
is static, sensitive or worth sending: the state store and the compressor do that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared.errors import TwinError

Scalar = str | int | float | bool | None
AttrValue = Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Reading:
    """One observation of an entity. ``state is None`` means the entity is unavailable."""

    entity_id: str
    state: str | None
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)
    ts: float = 0.0  # seconds since the epoch (or since the scenario start for the simulator's clock)
    source: str = ""


@dataclass(frozen=True, slots=True)
class StaticRecord:
    """A static fact a source knows (from the scenario, HA attributes or config)."""

    entity_id: str
    attribute: str
    value: str | int | float | bool | tuple[str, ...]
    sensitive: bool = False


Sink = Callable[[Reading], None]


class SourceError(TwinError):
    """A source failed to produce readings (device unreachable, bad payload, timeout)."""


class IngestError(SourceError):
    """Input from outside (an MQTT payload, an HTTP body) was rejected; carries an HTTP-like status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
