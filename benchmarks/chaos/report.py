"""The counts every chaos part reports, and how parts add up into ``llmtwin bench chaos``'s JSON.

A part (hostile input, auth, faults, load, leak scan) returns one :class:`ChaosCounts`; the bench sums
them with :meth:`ChaosCounts.merge`. ``details`` carries each part's own evidence (per-case outcomes,
p99s, RSS samples) under the part's name, so the JSON shows where every count came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ChaosCounts:
    sent: int = 0  # application messages the edges/clients sent and expected to be acknowledged
    acked: int = 0  # of those, acknowledged by the gateway
    lost: int = 0  # acknowledged (or accepted into an outbox) and then not found at the gateway
    duplicated: int = 0  # executed or stored more than once
    bad_inputs_tried: int = 0  # hostile inputs thrown at a running process
    bad_inputs_survived: int = 0  # of those: stable error code or counted drop, and others still served
    leak_hits: int = 0  # sensitive values found where they must never be
    max_rss_mb: float = 0.0  # the largest gateway RSS seen during the part
    details: dict[str, Any] = field(default_factory=dict)

    def merge(self, part: str, other: ChaosCounts) -> None:
        """Add ``other``'s counts to these and keep its details under ``part``."""
        self.sent += other.sent
        self.acked += other.acked
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.bad_inputs_tried += other.bad_inputs_tried
        self.bad_inputs_survived += other.bad_inputs_survived
        self.leak_hits += other.leak_hits
        self.max_rss_mb = max(self.max_rss_mb, other.max_rss_mb)
        self.details[part] = {**other.details, "counts": other.headline()}

    def headline(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "acked": self.acked,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "bad_inputs_tried": self.bad_inputs_tried,
            "bad_inputs_survived": self.bad_inputs_survived,
            "leak_hits": self.leak_hits,
            "max_rss_mb": round(self.max_rss_mb, 1),
        }
