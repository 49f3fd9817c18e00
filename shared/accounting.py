"""One message → the meter, a bandwidth-log line and Prometheus counters, the same way at both ends.

The gateway and the edge daemon each wrap a :class:`MessageAccounting` (with their metric prefix)
so the three views of the bytes can never disagree. With a :class:`~shared.kernel_accounting.KernelAccounting`
each message is also charged to the TCP connection it crossed, for the kernel-vs-model reconciliation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.bwlog import BandwidthLog
from shared.metering import ByteMeter, Direction, Sample
from shared.metrics import Registry

if TYPE_CHECKING:
    from shared.kernel_accounting import KernelAccounting

LAYERS = ("payload", "compressed", "frame")


class MessageAccounting:
    def __init__(
        self,
        prefix: str,
        meter: ByteMeter,
        log: BandwidthLog | None,
        registry: Registry,
        kernel: KernelAccounting | None = None,
    ) -> None:
        self.meter = meter
        self._log = log
        self.kernel = kernel
        self.bytes_total = registry.counter(
            f"{prefix}_bytes_total",
            "Bytes per tenant, direction, message type and layer",
            ("tenant", "direction", "type", "layer"),
        )
        self.messages_total = registry.counter(
            f"{prefix}_messages_total", "Messages per tenant, direction and type", ("tenant", "direction", "type")
        )

    def record(
        self,
        tenant: str,
        twin: str,
        direction: Direction,
        kind: str,
        rid: bytes,
        sample: Sample,
        conn: str | None = None,
    ) -> None:
        self.meter.record(tenant, direction, kind, sample)
        self.messages_total.inc(tenant, direction, kind)
        for layer in LAYERS:
            self.bytes_total.inc(tenant, direction, kind, layer, by=getattr(sample, layer))
        if self.kernel is not None:
            self.kernel.count_message(conn, tenant, direction, sample.frame)
        if self._log is not None:
            self._log.message(
                tenant=tenant,
                twin=twin,
                direction=direction,
                msg_type=kind,
                rid=rid,
                payload=sample.payload,
                compressed=sample.compressed,
                frame=sample.frame,
                conn=conn,
            )
