"""Accounting at the edge: every message the uplink sends or receives, at every metering layer.

The same counters, bandwidth-log schema and metric names as the gateway's (shared.accounting, with
the ``llmtwin_edge_`` prefix); frame bytes also feed the daily data budget. :attr:`kernel` tracks
the TwinClient's TCP connection(s) (hand it to ``TwinClient(connections=...)``): every connection is
the twin's own, and a message belongs to the connection that is live when it is sent or received
(the DEALER has at most one).
"""

from __future__ import annotations

from edge.budget import DataBudget
from shared.accounting import MessageAccounting
from shared.bwlog import BandwidthLog
from shared.kernel_accounting import SAMPLE_S, KernelAccounting
from shared.metering import ByteMeter, Direction, Sample
from shared.metrics import Registry
from shared.protocol import Encoded, Envelope, type_name
from shared.protocol import messages as m


class EdgeAccounting:
    def __init__(
        self,
        twin_id: str,
        meter: ByteMeter,
        log: BandwidthLog | None,
        registry: Registry,
        budget: DataBudget,
        *,
        sample_s: float = SAMPLE_S,
    ) -> None:
        self._twin = twin_id
        self._budget = budget
        self.kernel = KernelAccounting("llmtwin_edge", "edge", log, registry, tenant=twin_id, sample_s=sample_s)
        self.messages = MessageAccounting("llmtwin_edge", meter, log, registry, self.kernel)

    def __call__(self, direction: str, message: m.Message, rid: bytes, sized: Encoded | Envelope) -> None:
        """The TwinClient's byte hook: one call per message sent ("out") or received ("in")."""
        sample = Sample.of(sized.sizes.payload, sized.sizes.frames)
        self._budget.record(sample.frame)
        way: Direction = "out" if direction == "out" else "in"
        conn = self.kernel.current()
        self.messages.record(
            self._twin, self._twin, way, type_name(message), rid, sample, None if conn is None else conn.id
        )
