"""Accounting at the gateway: every message in and out, per tenant, direction and type.

One place turns a message into counters (shared.metering), a bandwidth-log line (shared.bwlog) and
Prometheus metrics, so the three never disagree. :attr:`kernel` tracks the ROUTER's TCP connections
(the transport feeds it, :meth:`gateway.transport.RouterTransport.attach`); a message is logged with
the connection the transport saw it on: the receive loop handles one message at a time, so the
transport's :attr:`~shared.kernel_accounting.KernelAccounting.inbound_conn` is the message being accounted,
and a reply is accounted right after its send returns, so
:attr:`~shared.kernel_accounting.KernelAccounting.outbound_conn` is that reply's connection.
"""

from __future__ import annotations

from gateway.transport import Sent
from shared.accounting import MessageAccounting
from shared.bwlog import BandwidthLog
from shared.kernel_accounting import SAMPLE_S, KernelAccounting
from shared.metering import ByteMeter, Sample
from shared.metrics import Registry
from shared.protocol import Encoded, Envelope, type_name
from shared.protocol import messages as m
from shared.protocol.results import QueryResult


class Accounting:
    def __init__(
        self, meter: ByteMeter, log: BandwidthLog | None, registry: Registry, *, sample_s: float = SAMPLE_S
    ) -> None:
        self.meter = meter
        self.kernel = KernelAccounting("llmtwin_gateway", "gateway", log, registry, sample_s=sample_s)
        self.messages = MessageAccounting("llmtwin_gateway", meter, log, registry, self.kernel)
        self.dropped_total = registry.counter(
            "llmtwin_gateway_dropped_total",
            "Messages refused or dropped before execution, by reason",
            ("tenant", "code"),
        )
        self.send_failures = registry.counter(
            "llmtwin_gateway_send_failures_total", "Replies that could not be delivered", ("reason",)
        )
        self.tokens_total = registry.counter(
            "llmtwin_gateway_tokens_total", "Tokens billed per tenant", ("tenant", "kind")
        )
        self.answers_total = registry.counter(
            "llmtwin_gateway_answers_total",
            "Answers per tenant by the model that ran them: adapter, none (no adapter in service yet) or "
            "base_only (a state question while the adapter in service reads the state worse than the base model)",
            ("tenant", "reader"),
        )

    def inbound(self, tenant: str, env: Envelope) -> None:
        sample = Sample.of(env.sizes.payload, env.sizes.frames)
        kind = type_name(env.message)
        self.messages.record(tenant, _twin(env.message), "in", kind, env.rid, sample, self.kernel.inbound_conn)

    def outbound(self, tenant: str, rid: bytes, reply: m.Message, encoded: Encoded, sent: Sent) -> None:
        if sent is not Sent.OK:
            self.send_failures.inc(sent.value)
            return
        sample = Sample.of(encoded.sizes.payload, encoded.sizes.frames)
        self.messages.record(tenant, "", "out", type_name(reply), rid, sample, self.kernel.outbound_conn)

    def dropped(self, tenant: str, code: str) -> None:
        self.dropped_total.inc(tenant, code)

    def billed(self, tenant: str, tokens_in: int, tokens_out: int) -> None:
        self.tokens_total.inc(tenant, "prompt", by=tokens_in)
        self.tokens_total.inc(tenant, "completion", by=tokens_out)

    def answered(self, tenant: str, result: QueryResult) -> None:
        reader = "base_only" if result.base_only else "adapter" if result.adapter_version else "none"
        self.answers_total.inc(tenant, reader)


def _twin(message: m.Message) -> str:
    twin = getattr(message, "twin_id", "")
    return twin if isinstance(twin, str) else ""
