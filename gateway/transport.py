"""The gateway's only socket code: one ROUTER, CURVE server, tenant from the ZAP User-Id.

Socket hygiene from DESIGN §6: ZAP domain enforced, ROUTER_MANDATORY (a full or vanished peer is an
error we count, not a silent drop), bounded HWMs, MAXMSGSIZE per frame, linger 0. Messages are read
part by part and anything after the second part is discarded while it is read, so a hostile
10,000-part message never becomes a 10,000-element list in Python.

Kernel accounting (shared.kernel_accounting.KernelAccounting, :meth:`RouterTransport.attach`): a socket
monitor reports every accepted TCP connection (ACCEPTED carries its descriptor) and every lost one;
:meth:`RouterTransport.watch` is the owned task that feeds those events to the registry and runs its
sampler. A connection's tenant is the tenant of the first message read from it. The message knows
its connection exactly: libzmq tags every received message with the descriptor it was read from
(``ZMQ_SRCFD``, the engine's ``__fd`` property), and with the CURVE key ZAP authenticated on that
connection (``User-Id``); the ROUTER routing id of that message then maps to the connection for the
replies. Peer addresses could not do this: libzmq's ``Peer-Address`` property and the ZAP request's
address carry the peer's IP without its port, so two devices behind one NAT (or every test on
127.0.0.1) would be indistinguishable.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from gateway.auth import TenantTable
from shared.config.gateway import ServerSection
from shared.kernel_accounting import KernelAccounting
from shared.metering import CURVE_MESSAGE_OVERHEAD

log = logging.getLogger(__name__)

# Protocol messages are one part; keep one more so a frame-count error can be reported.
KEEP_PARTS = 2
REVOKED = "<revoked>"  # the tenant of a connection whose key was unknown by its first message
MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED


@dataclass(frozen=True, slots=True)
class Inbound:
    peer: bytes  # ROUTER routing id: where replies go, never an identity
    tenant: str | None  # None: the key was revoked after the handshake
    frames: list[bytes]  # the protocol parts (at most KEEP_PARTS)
    parts: int  # how many parts the message really had


class Sent(enum.Enum):
    OK = "ok"
    UNROUTABLE = "unroutable"  # the peer disconnected (EHOSTUNREACH)
    FULL = "full"  # the peer's queue is at its HWM (EAGAIN): a slow consumer


@dataclass(slots=True)
class TransportCounters:
    received: int = 0
    revoked: int = 0
    oversized_parts: int = 0
    sent: int = 0
    unroutable: int = 0
    full: int = 0


class RouterTransport:
    """A bound CURVE ROUTER. The ZAP handler must already be bound in the same context."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        server: ServerSection,
        *,
        public_key: bytes,
        secret_key: bytes,
        max_frame_bytes: int,
        tenants: TenantTable,
    ) -> None:
        self._ctx = ctx
        self._server = server
        self._public = public_key
        self._secret = secret_key
        self._max_frame = max_frame_bytes
        self._tenants = tenants
        self._sock: zmq.asyncio.Socket | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self.kernel: KernelAccounting | None = None
        self.counters = TransportCounters()
        self.endpoint = ""

    def attach(self, kernel: KernelAccounting) -> None:
        """Track this socket's TCP connections in ``kernel`` (run :meth:`watch` as an owned task).

        Before :meth:`bind` no connection goes unseen; after it (the service attaches once the
        bandwidth log exists), a connection accepted in between is adopted from its first message."""
        self.kernel = kernel
        if self._sock is not None:
            kernel.server_port = _port(self.endpoint)
            self._monitor = self._sock.get_monitor_socket(MONITOR_EVENTS)

    def bind(self) -> str:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.curve_server = True
        sock.curve_publickey = self._public
        sock.curve_secretkey = self._secret
        sock.zap_domain = self._server.zap_domain.encode()
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.sndhwm = self._server.sndhwm
        sock.rcvhwm = self._server.rcvhwm
        # libzmq checks MAXMSGSIZE against the CURVE MESSAGE command, i.e. the part plus its 33 bytes of
        # box: without them a part of max_frame_bytes - 32 .. max_frame_bytes would cost the client its
        # connection (and a device that resends it, every reconnect) instead of a 413
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_frame + CURVE_MESSAGE_OVERHEAD)
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 60)
        if self.kernel is not None:  # only when someone reads it: an unread monitor fills up
            self._monitor = sock.get_monitor_socket(MONITOR_EVENTS)
        sock.bind(self._server.bind)
        self._sock = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if self.kernel is not None:
            self.kernel.server_port = _port(self.endpoint)
        return self.endpoint

    @property
    def socket(self) -> zmq.asyncio.Socket:
        assert self._sock is not None, "bind() first"
        return self._sock

    def close(self) -> None:
        if self.kernel is not None:
            self.kernel.close_all()  # never leave a connection held open by our duplicate descriptor
        if self._sock is not None:
            if self._monitor is not None:
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.disable_monitor()
            self._sock.close(linger=0)
            self._sock = None
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None

    async def watch(self) -> None:
        """Owned task: connection events into the kernel registry, and its periodic sampler.
        Cancelled at shutdown, which writes every live connection's close record."""
        kernel = self.kernel
        if kernel is None or self._monitor is None:
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(kernel.run(), name="kernel-sampler")
            tg.create_task(self._events(kernel, self._monitor), name="kernel-events")

    @staticmethod
    async def _events(kernel: KernelAccounting, monitor: zmq.asyncio.Socket) -> None:
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            kind, fd = event["event"], int(event["value"])
            try:
                if kind == zmq.EVENT_ACCEPTED:
                    kernel.open(fd)
                elif kind in (zmq.EVENT_DISCONNECTED, zmq.EVENT_CLOSED):
                    kernel.lost(fd)
            except Exception:  # accounting never stops the gateway; the periodic reap catches up
                log.exception("connection event %s for fd %d not tracked", kind, fd)

    async def recv(self) -> Inbound:
        """The next message with its tenant (looked up now, so revocation applies immediately)."""
        sock = self.socket
        head = await sock.recv(copy=False)
        peer = head.bytes
        frames: list[bytes] = []
        user_id = ""
        srcfd: int | None = None
        parts = 0
        while sock.getsockopt(zmq.RCVMORE):
            part = await sock.recv(copy=False)
            parts += 1
            if parts == 1:
                user_id = str(part.get("User-Id") or "")
                if self.kernel is not None:
                    srcfd = _srcfd(part)
            if parts <= KEEP_PARTS:
                frames.append(part.bytes)
        self.counters.received += 1
        tenant = self._tenants.tenant_for(user_id.encode()) if user_id else None
        if tenant is None:
            self.counters.revoked += 1
        if self.kernel is not None:
            try:
                self.kernel.route_in(peer, srcfd, tenant or REVOKED)
            except Exception:  # accounting never costs a message
                log.exception("message from fd %s not attributed to a connection", srcfd)
        return Inbound(peer, tenant, frames, parts)

    async def send(self, peer: bytes, frames: list[bytes]) -> Sent:
        """Send without waiting: a vanished or full peer is reported, never blocks the gateway."""
        try:
            await self.socket.send_multipart([peer, *frames], flags=zmq.DONTWAIT, copy=False)
        except zmq.Again:
            self.counters.full += 1
            return Sent.FULL
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self.counters.unroutable += 1
                return Sent.UNROUTABLE
            raise
        self.counters.sent += 1
        if self.kernel is not None:
            self.kernel.route_out(peer)  # last thing before returning: the caller accounts this reply now
        return Sent.OK


def _srcfd(part: zmq.Frame) -> int | None:
    """The TCP descriptor libzmq read this message from (None over transports without one)."""
    try:
        fd = part.get(zmq.SRCFD)
    except zmq.ZMQError:
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _port(endpoint: str) -> int | None:
    tail = endpoint.rsplit(":", 1)[-1]
    return int(tail) if endpoint.startswith("tcp://") and tail.isdigit() else None
