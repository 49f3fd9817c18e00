"""A raw DEALER for hostile clients: sends any frames, collects every reply by rid, watches handshakes.

Unlike ``edge.client.TwinClient`` it never validates what it sends. CURVE keys are optional (None: the
NULL mechanism); the server key may be wrong on purpose; the routing id may be chosen. A reply that
does not decode is counted, never raised. The gateway reads one connection's messages in order and
answers decode failures before it reads the next message, so :meth:`barrier` (a PING and its PONG)
proves that every synchronous answer to what was sent before it has arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict
from dataclasses import dataclass
from types import TracebackType

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from edge.client import ClientKeys
from shared.errors import WireError
from shared.protocol import decode, encode
from shared.protocol import messages as m

EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_DISCONNECTED
)


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    keys: ClientKeys | None  # None: the NULL mechanism (no CURVE at all)
    server_key: bytes | None = None  # override the server's public key (a wrong one)
    routing_id: bytes | None = None
    rcvhwm: int = 1000
    rcvbuf: int = -1  # SO_RCVBUF; -1: the OS default
    plain: bool = False  # the PLAIN mechanism (username/password) instead
    read: bool = True  # False: never read replies (a slow consumer)


class Probe:
    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, options: ProbeOptions) -> None:
        self._ctx = ctx
        self.endpoint = endpoint
        self.options = options
        self.sock: zmq.asyncio.Socket | None = None
        self.replies: dict[bytes, list[m.Message]] = defaultdict(list)
        self.events: dict[int, int] = defaultdict(int)
        self.undecodable = 0
        self._arrived = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._monitor: zmq.asyncio.Socket | None = None

    async def __aenter__(self) -> Probe:
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        o = self.options
        if o.plain:
            sock.plain_username, sock.plain_password = b"admin", b"admin"
        elif o.keys is not None:
            sock.curve_serverkey = o.server_key or o.keys.server_public
            sock.curve_publickey = o.keys.public
            sock.curve_secretkey = o.keys.secret
        if o.routing_id is not None:
            sock.setsockopt(zmq.ROUTING_ID, o.routing_id)
        sock.rcvhwm = o.rcvhwm
        if o.rcvbuf > 0:
            sock.setsockopt(zmq.RCVBUF, o.rcvbuf)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        monitor = self._monitor = sock.get_monitor_socket(EVENTS)
        sock.connect(self.endpoint)
        self.sock = sock
        self._tasks = [asyncio.create_task(self._watch(monitor))]
        if o.read:
            self._tasks.append(asyncio.create_task(self._read(sock)))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.sock is not None:  # before the watcher stops reading (see edge.client.TwinClient.__aexit__)
            with contextlib.suppress(zmq.ZMQError):
                self.sock.disable_monitor()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
        if self._monitor is not None:  # closed here too: a watcher cancelled before it ran never closes it
            self._monitor.close(linger=0)
            self._monitor = None

    # ---- sending and waiting -----------------------------------------------------------------------

    async def send(self, frames: list[bytes]) -> None:
        assert self.sock is not None
        if not frames:  # ZeroMQ has no zero-part message; the nearest thing is one empty part
            frames = [b""]
        await self.sock.send_multipart(frames, copy=len(frames) > 1 or len(frames[0]) < 65536)

    async def request(
        self, message: m.Message, *, rid: bytes | None = None, timeout_s: float = 10.0, deadline_ms: int = 0
    ) -> m.Message:
        """Send a well-formed request and wait for its completing reply (not ACCEPTED/PARTIAL)."""
        rid = rid or os.urandom(16)
        await self.send(encode(message, rid=rid, deadline_ms=deadline_ms).frames)
        return await self.wait(rid, timeout_s)

    async def wait(self, rid: bytes, timeout_s: float = 10.0) -> m.Message:
        """The first completing reply for ``rid`` (TimeoutError if none comes)."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: self._completing(rid) is not None)
            found = self._completing(rid)
            assert found is not None
            return found

    async def wait_any(self, rid: bytes, timeout_s: float = 10.0) -> m.Message:
        """The first reply of any kind (ACCEPTED included) for ``rid``."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: bool(self.replies.get(rid)))
            return self.replies[rid][0]

    async def wait_final(self, rid: bytes, timeout_s: float = 10.0) -> m.Final:
        """The FINAL for ``rid`` (other replies before it are kept in :attr:`replies`)."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: any(isinstance(r, m.Final) for r in self.replies.get(rid, ())))
            return next(r for r in self.replies[rid] if isinstance(r, m.Final))

    async def barrier(self, timeout_s: float = 10.0) -> None:
        """A PING/PONG round trip on this connection (TimeoutError if the gateway does not answer)."""
        reply = await self.request(m.Ping(), timeout_s=timeout_s)
        if not isinstance(reply, m.Pong):
            raise RuntimeError(f"barrier: {type(reply).__name__} instead of PONG")

    def _completing(self, rid: bytes) -> m.Message | None:
        for msg in self.replies.get(rid, ()):
            if not isinstance(msg, (m.Accepted, m.Partial)) or (isinstance(msg, m.Accepted) and msg.replayed):
                return msg
        return None

    # ---- the reader and the monitor ----------------------------------------------------------------

    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            try:
                env = decode(frames, side="reply")
            except WireError:
                self.undecodable += 1
                continue
            async with self._arrived:
                self.replies[env.rid].append(env.message)
                self._arrived.notify_all()

    async def _watch(self, monitor: zmq.asyncio.Socket) -> None:
        try:
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                async with self._arrived:
                    self.events[int(event["event"])] += 1
                    self._arrived.notify_all()
        finally:
            monitor.close(linger=0)

    async def wait_event(self, event: int, count: int = 1, timeout_s: float = 10.0) -> None:
        """Until the monitor has reported ``event`` at least ``count`` times in all."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: self.events[event] >= count)

    @property
    def auth_refused(self) -> int:
        e = self.events
        return (
            e[zmq.EVENT_HANDSHAKE_FAILED_AUTH]
            + e[zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL]
            + e[zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL]
        )
