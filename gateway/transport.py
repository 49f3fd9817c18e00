"""The gateway's only socket code: one ROUTER, CURVE server, tenant from the ZAP User-Id.

Socket hygiene from DESIGN §6: ZAP domain enforced, ROUTER_MANDATORY (a full or vanished peer is an
error we count, not a silent drop), bounded HWMs, MAXMSGSIZE per frame, linger 0. Messages are read
part by part and anything after the second part is discarded while it is read, so a hostile
10,000-part message never becomes a 10,000-element list in Python.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

import zmq
import zmq.asyncio

from gateway.auth import TenantTable
from shared.config.gateway import ServerSection

log = logging.getLogger(__name__)

# Protocol messages are one part; keep one more so a frame-count error can be reported.
KEEP_PARTS = 2


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
        self.counters = TransportCounters()
        self.endpoint = ""

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
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_frame)
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 60)
        sock.bind(self._server.bind)
        self._sock = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    @property
    def socket(self) -> zmq.asyncio.Socket:
        assert self._sock is not None, "bind() first"
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    async def recv(self) -> Inbound:
        """The next message with its tenant (looked up now, so revocation applies immediately)."""
        sock = self.socket
        head = await sock.recv(copy=False)
        peer = head.bytes
        frames: list[bytes] = []
        user_id = ""
        parts = 0
        while sock.getsockopt(zmq.RCVMORE):
            part = await sock.recv(copy=False)
            parts += 1
            if parts == 1:
                user_id = str(part.get("User-Id") or "")
            if parts <= KEEP_PARTS:
                frames.append(part.bytes)
        self.counters.received += 1
        tenant = self._tenants.tenant_for(user_id.encode()) if user_id else None
        if tenant is None:
            self.counters.revoked += 1
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
        return Sent.OK
