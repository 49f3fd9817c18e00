"""Kernel truth per TCP connection, reconciled with the message model (shared.accounting).

:class:`KernelAccounting` is a registry of the live TCP connections of one ZeroMQ
socket (fed by the socket monitor: CONNECTED on the edge's DEALER, ACCEPTED on the gateway's
ROUTER, DISCONNECTED/CLOSED on both), ``TCP_INFO`` sampled every ``sample_s`` by its owned task
(:meth:`KernelAccounting.run`) and once more when a connection ends, written to the bandwidth log
(``"type": "tcp_info"``) and exported as ``<prefix>_kernel_bytes_total{tenant,direction}``
(``in`` = bytes_received, ``out`` = bytes_acked).

Each connection is held through a duplicate of ZeroMQ's descriptor (shared.tcpinfo.TcpHandle): the
monitor's DISCONNECTED arrives after ZeroMQ has closed (and maybe reused) its descriptor, but the
duplicate still reaches the same socket, so the close record is read *at* the close, exactly
(``"final": "exact"``); only if that read fails does the close record repeat the last periodic
sample (``"final": "last_sample"``). A connection is released as soon as ZeroMQ's descriptor no
longer refers to it (checked on every DISCONNECTED/CLOSED event, shortly after it, and on every
periodic tick), so holding it delays our FIN by the monitor's latency, milliseconds.

Reconciliation (:meth:`KernelAccounting.reconcile`, per connection or per tenant) compares the kernel
with the model: ``in`` = bytes_received vs the peer's half of the ZMTP/CURVE handshake + the
``frame`` bytes of the messages logged as received; ``out`` = bytes_acked vs our half of the
handshake + the frames logged as sent. The SYN/FIN octets the kernel counts in sequence space are
shown apart (``control``) and taken out of the difference; bytes sent but not acknowledged yet
(``unacked``) are shown, not taken out: a live sample's ``out`` can trail the model by them
(delayed ACKs), a close record's cannot. The difference is reported as it is: absolute (bytes,
kernel − control − model) and relative (to the model). The arithmetic: :mod:`shared.reconciliation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from shared.bwlog import BandwidthLog, Side
from shared.metering import Direction, handshake_bytes
from shared.metrics import Registry
from shared.reconciliation import Figures, Reconciliation, add_message, compare
from shared.tcpinfo import TcpCounters, TcpHandle, control_octets

log = logging.getLogger(__name__)

UNATTRIBUTED = "<unattributed>"  # a connection that never carried an authenticated message
SAMPLE_S = 10.0
RECHECK_S = 0.02  # after a DISCONNECTED whose descriptor still looked alive (the close is racing us)
RECHECK_GRACE_S = 2.0
RECENT_CLOSED = 64


@dataclass(slots=True, eq=False)
class Connection:
    """One live (or just closed) TCP connection of the tracked socket."""

    id: str
    handle: TcpHandle
    opened: float
    tenant: str  # UNATTRIBUTED until the first authenticated message (edge: known at once)
    frame_in: int = 0
    frame_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    last: TcpCounters | None = None
    last_ts: float = 0.0
    exported_in: int = 0
    exported_out: int = 0
    closed: bool = False
    final: Literal["exact", "last_sample"] | None = None
    routes: set[bytes] = field(default_factory=set)  # gateway: ROUTER routing ids seen on it

    @property
    def attributed(self) -> bool:
        return self.tenant != UNATTRIBUTED

    def to_json(self) -> dict[str, object]:
        last = self.last
        return {
            "conn": self.id,
            "tenant": self.tenant,
            "local": self.handle.local,
            "peer": self.handle.peer,
            "opened": round(self.opened, 3),
            "closed": self.closed,
            "sampled": None if last is None else round(self.last_ts, 3),
            "tcp_state": None if last is None else last.state,
            "bytes_received": None if last is None else last.bytes_received,
            "bytes_acked": None if last is None else last.bytes_acked,
            "bytes_sent": None if last is None else last.bytes_sent,
            "bytes_retrans": None if last is None else last.bytes_retrans,
            "segs_in": None if last is None else last.segs_in,
            "segs_out": None if last is None else last.segs_out,
        }


class KernelAccounting:
    """The TCP connections of one ZeroMQ socket: kernel samples, log records, metrics, reconciliation.

    ``side`` "edge" connects (DEALER, the client half of the handshake goes out), "gateway" accepts
    (ROUTER). ``tenant`` is every connection's tenant when it is known up front (the edge's twin);
    the gateway attributes each connection with :meth:`attribute` from its first message.
    Single-threaded: owned by one event loop.
    """

    def __init__(
        self,
        prefix: str,
        side: Side,
        log: BandwidthLog | None,
        registry: Registry,
        *,
        tenant: str | None = None,
        sample_s: float = SAMPLE_S,
    ) -> None:
        self.side: Side = side
        self._log = log
        self._tenant = tenant
        self.sample_s = sample_s
        self.connecting = side == "edge"
        up, down = handshake_bytes("DEALER", "ROUTER", "curve")
        self.handshake_in, self.handshake_out = (down, up) if self.connecting else (up, down)
        self.server_port: int | None = None  # only sockets to/at this port are adopted
        self._live: dict[str, Connection] = {}
        self._routes: dict[bytes, Connection] = {}
        self._recent: deque[Connection] = deque(maxlen=RECENT_CLOSED)
        self._closed: dict[str, Figures] = {}
        self._tenant_model: dict[str, Figures] = {}
        self._unattached: dict[str, Figures] = {}  # messages logged while no connection was known
        self._rechecks: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._next_sample = time.monotonic() + sample_s
        self.inbound_conn: str | None = None  # gateway: the connection of the message being handled
        self.outbound_conn: str | None = None  # gateway: the connection the last reply went to
        self.kernel_bytes = registry.counter(
            f"{prefix}_kernel_bytes_total",
            "Bytes the kernel counted on the TCP connections (TCP_INFO: in = bytes_received, out = bytes_acked)",
            ("tenant", "direction"),
        )
        self.connections_total = registry.counter(
            f"{prefix}_kernel_connections_total", "TCP connections tracked, by tenant", ("tenant",)
        )
        self._open_gauge = registry.gauge(f"{prefix}_kernel_connections_open", "TCP connections open now")
        self._diff_bytes = registry.gauge(
            f"{prefix}_kernel_model_difference_bytes",
            "Kernel minus model bytes (SYN/FIN octets excluded), per tenant and direction, at the last scrape",
            ("tenant", "direction"),
        )
        self._diff_ratio = registry.gauge(
            f"{prefix}_kernel_model_difference_ratio",
            "Kernel minus model over model, per tenant and direction, at the last scrape",
            ("tenant", "direction"),
        )

    @property
    def handshake(self) -> tuple[int, int]:
        """One connection's ZMTP/CURVE handshake as this side sees it: (in, out) bytes."""
        return self.handshake_in, self.handshake_out

    # ---- the connection registry -------------------------------------------------------------------

    def live(self) -> list[Connection]:
        return list(self._live.values())

    def recent(self) -> list[Connection]:
        """The most recently closed connections (at most RECENT_CLOSED), oldest first."""
        return list(self._recent)

    def current(self) -> Connection | None:
        """The most recently opened live connection (the edge's DEALER has at most one)."""
        return next(reversed(self._live.values()), None) if self._live else None

    def open(self, fd: int) -> Connection | None:
        """A monitor's CONNECTED/ACCEPTED (or a message from an fd not seen yet): adopt the socket.

        Idempotent per socket; None if ``fd`` is no connected TCP socket of this ZeroMQ socket now
        (closed already, reused by something else: the port check keeps other sockets out)."""
        for conn in self._live.values():
            if conn.handle.fd == fd and conn.handle.owned_by():
                return conn
        handle = TcpHandle.adopt(fd)
        if handle is None:
            return None
        for conn in self._live.values():
            if conn.handle.identity == handle.identity:
                handle.close()
                return conn
        if not self._ours(handle):
            handle.close()
            return None
        now = time.time()
        client, server = (handle.local, handle.peer) if self.connecting else (handle.peer, handle.local)
        conn_id = f"{client}-{server}@{int(now * 1000)}"
        conn = Connection(conn_id, handle, now, self._tenant or UNATTRIBUTED)
        self._live[conn_id] = conn
        self._open_gauge.set(value=len(self._live))
        if conn.attributed:
            self.connections_total.inc(conn.tenant)
        return conn

    def _ours(self, handle: TcpHandle) -> bool:
        if self.server_port is None:
            return True
        server = handle.peer if self.connecting else handle.local
        return server.rsplit(":", 1)[-1] == str(self.server_port)

    def lost(self, fd: int) -> None:
        """A monitor's DISCONNECTED/CLOSED for ``fd``: release what ZeroMQ has let go of; if the
        descriptor still refers to the socket (the event outran the close), look again shortly."""
        for conn in list(self._live.values()):
            if conn.handle.fd != fd:
                continue
            if conn.handle.owned_by():
                self._rechecks.setdefault(conn.id, time.monotonic())
                self._wake.set()
            else:
                self.finish(conn)

    def reap(self) -> None:
        """Release every connection ZeroMQ no longer holds (its descriptor closed or reused)."""
        for conn in list(self._live.values()):
            if not conn.handle.owned_by():
                self.finish(conn)
        self._recheck()

    def _recheck(self) -> None:
        """Look again at the connections a DISCONNECTED/CLOSED named while ZeroMQ still held them;
        after RECHECK_GRACE_S the event was about an earlier socket with the same descriptor number."""
        now = time.monotonic()
        for conn_id, since in list(self._rechecks.items()):
            conn = self._live.get(conn_id)
            if conn is not None and not conn.handle.owned_by():
                self.finish(conn)
            elif conn is None or now - since > RECHECK_GRACE_S:
                del self._rechecks[conn_id]

    def attribute(self, conn: Connection, tenant: str) -> None:
        """Name the connection's tenant (the gateway: from its first authenticated message)."""
        if conn.attributed or conn.closed:
            return
        conn.tenant = tenant
        self.connections_total.inc(tenant)
        self._export(conn)

    def by_fd(self, fd: int) -> Connection | None:
        for conn in self._live.values():
            if conn.handle.fd == fd:
                return conn
        return None

    # ---- gateway routing: ROUTER routing id → connection --------------------------------------------

    def route_in(self, route: bytes, fd: int | None, tenant: str) -> Connection | None:
        """The connection a message from routing id ``route`` came on (``fd``: its SRCFD, used the
        first time a routing id is seen), attributed to ``tenant``; remembered as :attr:`inbound_conn`."""
        conn = self._routes.get(route)
        if conn is None and fd is not None and fd >= 0:
            conn = self.by_fd(fd)
            if conn is not None and not conn.handle.owned_by(fd):
                conn = None
            if conn is None:
                conn = self.open(fd)
            if conn is not None:
                conn.routes.add(route)
                self._routes[route] = conn
        if conn is not None:
            self.attribute(conn, tenant)
        self.inbound_conn = None if conn is None else conn.id
        return conn

    def route_out(self, route: bytes) -> None:
        """Remember the connection a reply to ``route`` went to, as :attr:`outbound_conn`."""
        conn = self._routes.get(route)
        self.outbound_conn = None if conn is None else conn.id

    # ---- model side ----------------------------------------------------------------------------------

    def count_message(self, conn_id: str | None, tenant: str, direction: Direction, frame: int) -> None:
        conn = self._live.get(conn_id) if conn_id else None
        if conn is None and conn_id:
            conn = next((c for c in self._recent if c.id == conn_id), None)
        add_message(self._tenant_model.setdefault(tenant, Figures()), direction, frame)
        add_message(conn if conn is not None else self._unattached.setdefault(tenant, Figures()), direction, frame)

    # ---- sampling ------------------------------------------------------------------------------------

    def sample(self, conn: Connection, *, log: bool = True) -> TcpCounters | None:
        try:
            counters = conn.handle.sample()
        except OSError:
            return None
        conn.last = counters
        conn.last_ts = time.time()
        if conn.attributed:
            self._export(conn)
            if log and self._log is not None:
                self._log.tcp_info(
                    tenant=conn.tenant,
                    twin=conn.tenant,
                    conn=conn.id,
                    event="sample",
                    counters=counters,
                    ts=conn.last_ts,
                )
        return counters

    def sample_all(self, *, log: bool = True) -> None:
        """Release what ZeroMQ let go of, then sample every live connection (``log``: write records)."""
        self.reap()
        for conn in list(self._live.values()):
            self.sample(conn, log=log)

    def finish(self, conn: Connection) -> None:
        """The connection's last record: read now through our handle (exact), else the last sample."""
        if conn.closed:
            return
        try:
            conn.last = conn.handle.sample()
            conn.last_ts = time.time()
            conn.final = "exact"
        except OSError:
            conn.final = "last_sample"
        conn.handle.close()
        conn.closed = True
        self._live.pop(conn.id, None)
        self._rechecks.pop(conn.id, None)
        for route in conn.routes:
            if self._routes.get(route) is conn:
                del self._routes[route]
        self._open_gauge.set(value=len(self._live))
        if not conn.attributed:
            self.connections_total.inc(conn.tenant)
        self._export(conn, closing=True)
        if conn.last is not None and self._log is not None:
            self._log.tcp_info(
                tenant=conn.tenant,
                twin=conn.tenant,
                conn=conn.id,
                event="close",
                counters=conn.last,
                final=conn.final,
                ts=time.time(),
            )
        self._closed.setdefault(conn.tenant, Figures()).add(self._figures(conn))
        self._recent.append(conn)

    def close_all(self) -> None:
        """Final records for every live connection and release them all (shutdown; idempotent)."""
        for conn in list(self._live.values()):
            self.finish(conn)

    def _export(self, conn: Connection, *, closing: bool = False) -> None:
        """Add what the kernel counters grew by to the Prometheus counters, once the tenant is known
        (or at the close), so a connection's bytes never split across tenant labels."""
        last = conn.last
        if last is None or not (conn.attributed or closing):
            return
        if last.bytes_received is not None and last.bytes_received > conn.exported_in:
            self.kernel_bytes.inc(conn.tenant, "in", by=last.bytes_received - conn.exported_in)
            conn.exported_in = last.bytes_received
        if last.bytes_acked is not None and last.bytes_acked > conn.exported_out:
            self.kernel_bytes.inc(conn.tenant, "out", by=last.bytes_acked - conn.exported_out)
            conn.exported_out = last.bytes_acked

    # ---- the owned task ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Apply a changed ``sample_s`` now (the next sample is due ``sample_s`` from now)."""
        self._next_sample = time.monotonic() + self.sample_s
        self._wake.set()

    async def run(self) -> None:
        """Sample every ``sample_s``, re-check lost connections; on cancellation, close them all.
        Accounting never stops the service: a failing tick is logged and the next one runs."""
        try:
            while True:
                wait = RECHECK_S if self._rechecks else max(0.0, self._next_sample - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                self._wake.clear()
                try:
                    self._recheck()
                    if time.monotonic() >= self._next_sample:
                        self._next_sample = time.monotonic() + self.sample_s
                        self.sample_all()
                except Exception:
                    log.exception("kernel accounting tick failed")
        finally:
            self.close_all()

    # ---- reconciliation ------------------------------------------------------------------------------

    def _figures(self, conn: Connection) -> Figures:
        f = Figures(
            connections=1,
            frame_in=conn.frame_in,
            frame_out=conn.frame_out,
            messages_in=conn.messages_in,
            messages_out=conn.messages_out,
            exact=conn.closed and conn.final == "exact",
        )
        last = conn.last
        if last is None:
            f.kernel_in_known = f.kernel_out_known = False
            f.unacked = None
            f.exact = False
            return f
        f.sampled = 1
        control_in, control_out = control_octets(last.state, connecting=self.connecting)
        f.kernel_in_known = last.bytes_received is not None
        f.kernel_out_known = last.bytes_acked is not None
        f.kernel_in = last.bytes_received or 0
        f.kernel_out = last.bytes_acked or 0
        f.control_in, f.control_out = control_in, control_out
        f.unacked = last.unacked
        return f

    def reconcile_connection(self, conn: Connection, *, fresh: bool = True) -> Reconciliation:
        """One connection against the messages logged on it (``fresh``: read a live one's counters now)."""
        if fresh and not conn.closed:
            self.sample(conn, log=False)
        return compare(self.side, "conn", conn.id, conn.tenant, self._figures(conn), self.handshake)

    def reconcile_tenant(self, tenant: str, *, fresh: bool = True) -> Reconciliation:
        """Every connection of the tenant (live and closed) against all its logged messages."""
        if fresh:
            self.reap()
        kernel = Figures()
        kernel.add(self._closed.get(tenant, Figures()))
        for conn in list(self._live.values()):
            if conn.tenant == tenant:
                if fresh:
                    self.sample(conn, log=False)
                kernel.add(self._figures(conn))
        model = self._tenant_model.get(tenant, Figures())
        kernel.frame_in, kernel.frame_out = model.frame_in, model.frame_out
        kernel.messages_in, kernel.messages_out = model.messages_in, model.messages_out
        return compare(self.side, "tenant", tenant, tenant, kernel, self.handshake)

    def tenants(self) -> list[str]:
        names = set(self._closed) | set(self._tenant_model) | {c.tenant for c in self._live.values()}
        return sorted(names)

    def reconcile(self, *, by: Literal["conn", "tenant"] = "tenant", fresh: bool = True) -> list[Reconciliation]:
        """Per connection (live and recently closed) or per tenant; ``fresh``: live counters read now."""
        if fresh:
            self.sample_all(log=False)
        if by == "conn":
            return [self.reconcile_connection(c, fresh=False) for c in self._conns()]
        return [self.reconcile_tenant(t, fresh=False) for t in self.tenants()]

    def _conns(self) -> Iterator[Connection]:
        yield from self._recent
        yield from self._live.values()

    def refresh(self) -> None:
        """Fresh kernel counters for every live connection (no log records) and the difference gauges."""
        self.sample_all(log=False)
        for rec in self.reconcile(by="tenant", fresh=False):
            for direction, diff in (("in", rec.inbound), ("out", rec.outbound)):
                if diff.absolute is not None:
                    self._diff_bytes.set(rec.tenant, direction, value=diff.absolute)
                if diff.relative is not None:
                    self._diff_ratio.set(rec.tenant, direction, value=diff.relative)

    def snapshot(self) -> dict[str, object]:
        """JSON for the admin servers: live and recently closed connections, per-tenant reconciliation."""
        self.refresh()
        return {
            "side": self.side,
            "sample_s": self.sample_s,
            "handshake": {"in": self.handshake_in, "out": self.handshake_out},
            "connections": [
                {**c.to_json(), "reconciliation": self.reconcile_connection(c, fresh=False).to_json()}
                for c in self._conns()
            ],
            "tenants": [r.to_json() for r in self.reconcile(by="tenant", fresh=False)],
            # messages logged while no connection was known: in the tenants' model, in no connection's
            "unattached": {tenant: f.model_json() for tenant, f in sorted(self._unattached.items())},
        }
