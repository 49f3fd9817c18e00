"""The twin client: a CURVE DEALER that speaks the LLM-Twin protocol to the gateway.

Used by the edge daemon's uplink and by ``llmtwin query``. One task owns the socket's reads and
matches replies to waiting requests by rid; ACCEPTED and PARTIAL are intermediate, FINAL, ERROR and
PONG complete a request. A socket monitor turns a refused CURVE handshake into a clear error for
every waiting request instead of a silent time-out. ``ZMQ_IMMEDIATE`` keeps libzmq from queueing
messages for a gateway that is not connected: the caller's outbox is the only queue.

With ``connections`` (a shared.kernel_accounting.KernelAccounting, e.g. ``EdgeAccounting.kernel``) the
monitor also reports each TCP connection (CONNECTED carries its descriptor) and its loss, and the
client owns the registry's sampler task: kernel TCP_INFO samples of its connection(s), with a final
one when a connection ends or the client closes.

With ``capture`` (a shared.capture.PayloadCapture, opt-in) every message sent is also appended to a
capture file as plain msgpack, before compression and encryption: what audits such as the leak scan read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from shared.capture import PayloadCapture
from shared.errors import Forbidden, WireError, error_for_code
from shared.kernel_accounting import KernelAccounting
from shared.keys import load_public, load_secret
from shared.metering import CURVE_MESSAGE_OVERHEAD
from shared.protocol import DEFAULT_LIMITS, Encoded, Envelope, Limits, decode, decode_result, encode
from shared.protocol import messages as m

log = logging.getLogger(__name__)

ByteHook = Callable[[str, m.Message, bytes, Encoded | Envelope], None]


@dataclass(frozen=True, slots=True)
class ClientKeys:
    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def from_files(cls, server_public: Path, client_secret: Path) -> ClientKeys:
        public, secret = load_secret(client_secret)
        return cls(load_public(server_public), public, secret)


@dataclass(frozen=True, slots=True)
class Reply:
    rid: bytes
    message: m.Message  # Final, Error, Pong, or Accepted (a FETCH of a request still running)
    result: object | None = None  # the decoded Final.result

    def raise_for_error(self) -> Reply:
        if isinstance(self.message, m.Error):
            exc = error_for_code(self.message.code)(self.message.detail, retry_after_ms=self.message.retry_after_ms)
            raise exc
        return self


@dataclass
class _Pending:
    future: asyncio.Future[Reply]
    accepted: bool = False
    partial: list[str] = field(default_factory=list)


class TwinClient:
    def __init__(
        self,
        endpoint: str,
        keys: ClientKeys,
        *,
        limits: Limits = DEFAULT_LIMITS,
        on_bytes: ByteHook | None = None,
        hwm: int = 1000,
        context: zmq.asyncio.Context | None = None,
        connections: KernelAccounting | None = None,
        capture: PayloadCapture | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._capture = capture
        self._keys = keys
        self._limits = limits
        self._on_bytes = on_bytes
        self._hwm = hwm
        self._ctx: zmq.asyncio.Context | None = context
        self._own_ctx = context is None
        self._sock: zmq.asyncio.Socket | None = None
        self._pending: dict[bytes, _Pending] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.connections = connections
        self.connected = asyncio.Event()
        self.auth_failed = False

    async def __aenter__(self) -> TwinClient:
        if self._ctx is None:
            self._ctx = zmq.asyncio.Context()
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_serverkey = self._keys.server_public
        sock.curve_publickey = self._keys.public
        sock.curve_secretkey = self._keys.secret
        sock.sndhwm = sock.rcvhwm = self._hwm
        sock.setsockopt(zmq.IMMEDIATE, 1)
        # checked by libzmq on the CURVE MESSAGE command: the part plus its 33 bytes of box (as the gateway)
        sock.setsockopt(zmq.MAXMSGSIZE, self._limits.max_frame_bytes + CURVE_MESSAGE_OVERHEAD)
        sock.setsockopt(zmq.RECONNECT_IVL, 200)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_DISCONNECTED
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_CONNECTED
            | zmq.EVENT_CLOSED
        )
        if self.connections is not None:
            self.connections.server_port = _port(self.endpoint)
        sock.connect(self.endpoint)
        self._sock = sock
        self._tasks = [asyncio.create_task(self._read(sock)), asyncio.create_task(self._watch(monitor))]
        if self.connections is not None:
            self._tasks.append(asyncio.create_task(self.connections.run(), name="kernel-sampler"))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._sock is not None:
            # first, while the watcher still reads: libzmq sends monitor events blocking, holding the
            # monitor's lock, so an event sent after the reader closed would hang disable_monitor forever
            with contextlib.suppress(zmq.ZMQError):
                self._sock.disable_monitor()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        if self.connections is not None:
            self.connections.close_all()  # the close records, before the socket goes (idempotent)
        if self._sock is not None:
            self._sock.close(linger=0)
        if self._ctx is not None and self._own_ctx:
            self._ctx.term()
            self._ctx = None

    # ---- requests ----------------------------------------------------------------------------------

    async def request(
        self,
        message: m.Message,
        *,
        rid: bytes | None = None,
        timeout_s: float = 30.0,
        seq: int = 0,
        deadline_ms: int = 0,
        attempt: int = 0,
    ) -> Reply:
        """Send and wait for the completing reply (FINAL / ERROR / PONG). TimeoutError if none comes."""
        rid = rid or os.urandom(16)
        return await self._exchange(rid, message, rid, timeout_s, seq=seq, deadline_ms=deadline_ms, attempt=attempt)

    async def fetch(self, rid: bytes, *, timeout_s: float = 30.0) -> Reply:
        """Ask for the reply of an earlier request (after a reconnect)."""
        return await self._exchange(rid, m.Fetch(rid), os.urandom(16), timeout_s)

    async def _exchange(
        self, wait_rid: bytes, message: m.Message, send_rid: bytes, timeout_s: float, **header: int
    ) -> Reply:
        """Send ``message`` and wait for the reply to ``wait_rid``. While the gateway is unreachable the
        send itself waits (IMMEDIATE): a refused key fails the waiter, which then ends the send too."""
        waiter = self._expect(wait_rid)
        sending: asyncio.Future[None] = asyncio.ensure_future(self._send(message, send_rid, **header))
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.wait([sending, waiter], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
                if not waiter.done():
                    sending.result()  # a send error ends the exchange
                return await waiter
        finally:
            sending.cancel()
            self._pending.pop(wait_rid, None)

    def _expect(self, rid: bytes) -> asyncio.Future[Reply]:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[rid] = _Pending(future)
        if self.auth_failed:
            future.set_exception(Forbidden("the gateway refused this device's key"))
        return future

    async def _send(self, message: m.Message, rid: bytes, **header: int) -> None:
        assert self._sock is not None, "use `async with TwinClient(...)`"
        encoded = encode(message, rid=rid, limits=self._limits, **header)
        if self._capture is not None:
            self._capture.append(message, rid)  # plain msgpack: before lz4 and before CURVE encrypts it
        await self._sock.send_multipart(encoded.frames)
        if self._on_bytes is not None:
            self._on_bytes("out", message, rid, encoded)

    # ---- the reader and the monitor ----------------------------------------------------------------

    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            try:
                env = decode(frames, side="reply", limits=self._limits)
            except WireError as exc:
                log.warning("undecodable reply from the gateway dropped: %s", exc.code)
                continue
            if self._on_bytes is not None:
                self._on_bytes("in", env.message, env.rid, env)
            self._complete(env)

    def _complete(self, env: Envelope) -> None:
        pending = self._pending.get(env.rid)
        if pending is None or pending.future.done():
            return
        msg = env.message
        if isinstance(msg, m.Partial):
            pending.partial.append(msg.text)
        elif isinstance(msg, m.Accepted) and not msg.replayed:
            pending.accepted = True
        elif isinstance(msg, m.Final):
            try:
                result = decode_result(msg.kind, msg.result, self._limits)
            except WireError as exc:
                pending.future.set_exception(exc)
                return
            pending.future.set_result(Reply(env.rid, msg, result))
        else:
            pending.future.set_result(Reply(env.rid, msg))

    async def _watch(self, monitor: zmq.asyncio.Socket) -> None:
        try:
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                kind = event["event"]
                if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.auth_failed = False
                    self.connected.set()
                elif kind == zmq.EVENT_DISCONNECTED:
                    self.connected.clear()
                elif kind in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                    self.auth_failed = True
                    self._fail_all(Forbidden("the gateway refused this device's key"))
                if kind in (zmq.EVENT_CONNECTED, zmq.EVENT_DISCONNECTED, zmq.EVENT_CLOSED):
                    self._track(kind, int(event["value"]))
        finally:
            monitor.close(linger=0)

    def _track(self, kind: int, fd: int) -> None:
        if self.connections is None:
            return
        try:
            if kind == zmq.EVENT_CONNECTED:
                self.connections.open(fd)
            else:
                self.connections.lost(fd)
        except Exception:  # accounting never stops the client; the periodic reap catches up
            log.exception("connection event %s for fd %d not tracked", kind, fd)

    def _fail_all(self, exc: WireError) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(exc)


def _port(endpoint: str) -> int | None:
    """The TCP port of a ``tcp://host:port`` endpoint (None for other transports)."""
    tail = endpoint.rsplit(":", 1)[-1]
    return int(tail) if endpoint.startswith("tcp://") and tail.isdigit() else None
