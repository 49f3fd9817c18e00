"""Transport pieces of the baselines: an acknowledging CURVE sink, a raw CURVE DEALER (the relay is
``benchmarks.relay``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from types import TracebackType

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from benchmarks.bandwidth.options import ACK_BYTES, HANDSHAKE_TIMEOUT_S
from benchmarks.bandwidth.wire import Wire, kernel_stream
from benchmarks.relay import TcpRelay
from shared.metering import handshake_bytes, part_wire_bytes
from shared.tcpinfo import TcpHandle


@contextlib.asynccontextmanager
async def sink(ctx: zmq.asyncio.Context, secret: bytes) -> AsyncIterator[int]:
    """A CURVE ROUTER on 127.0.0.1 that answers every message with one 8-byte frame; yields its port."""
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    sock.curve_server = True
    sock.curve_secretkey = secret
    port = sock.bind_to_random_port("tcp://127.0.0.1")

    async def serve() -> None:
        n = 0
        while True:
            route, *_ = await sock.recv_multipart()
            n += 1
            await sock.send_multipart([route, n.to_bytes(ACK_BYTES, "big")])

    task = asyncio.create_task(serve(), name="bench-sink")
    try:
        yield port
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sock.close(linger=0)


class RawPeer:
    """A CURVE DEALER sending one raw frame per message and waiting for the sink's ack."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, server_public: bytes) -> None:
        self._ctx = ctx
        self._endpoint = endpoint
        self._server_public = server_public
        self._sock: zmq.asyncio.Socket | None = None
        self._handle: TcpHandle | None = None
        up, down = handshake_bytes("DEALER", "ROUTER", "curve")
        self.wire = Wire(model_up=up, model_down=down)

    async def __aenter__(self) -> RawPeer:
        public, secret = zmq.curve_keypair()
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._server_public, public, secret
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._sock = sock
        sock.connect(self._endpoint)
        through = False
        try:
            await self._handshake(monitor)
            through = True
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
            if not through:
                await self.__aexit__(None, None, None)
        return self

    async def _handshake(self, monitor: zmq.asyncio.Socket) -> None:
        """Until CURVE is through; the TCP socket is adopted when the monitor reports it (CONNECTED)."""
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                if event["event"] == zmq.EVENT_CONNECTED:
                    self._handle = TcpHandle.adopt(int(event["value"]))
                elif event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    break
        if self._handle is None:
            raise OSError(f"{self._endpoint}: no TCP connection seen by the monitor")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    async def send(self, frame: bytes | memoryview) -> int:
        """Send one frame, wait for its ack; returns the model bytes of both."""
        assert self._sock is not None
        await self._sock.send(frame, copy=len(frame) < 65536)
        ack = await self._sock.recv()
        up, down = part_wire_bytes(len(frame)), part_wire_bytes(len(ack))
        self.wire.model_up += up
        self.wire.model_down += down
        self.wire.messages += 1
        return up + down

    def sample(self, relay: TcpRelay) -> Wire:
        """The counts so far, with the kernel's and the relay's read now."""
        assert self._handle is not None
        up, down = kernel_stream(self._handle.sample())
        return dataclasses.replace(self.wire, kernel_up=up, kernel_down=down, relay_up=relay.up, relay_down=relay.down)
