"""A TCP relay between a client and a server on 127.0.0.1: counts the bytes it carries, and can cut the link.

``up``/``down`` count what it read from the client and from the server, which is what crossed the
wire each way (the bandwidth bench checks its accounting against them). ``cut()`` resets every
relayed connection (RST, no FIN) and refuses new ones until ``restore()``: a router that went away,
so the client's ZeroMQ socket sees the disconnect and keeps reconnecting (the chaos faults).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType


class TcpRelay:
    """127.0.0.1:``port`` → 127.0.0.1:``target``.

    ``drain_s``: on exit, how long relayed connections may take to finish after the listener closes
    (a client that closed first has its EOF travel through both pumps, so the counts are complete);
    0 resets them at once.
    """

    def __init__(self, target: int, *, drain_s: float = 10.0) -> None:
        self._target = target
        self._drain_s = drain_s
        self.port = 0
        self.up = self.down = 0  # bytes read from the client / from the server
        self.link_up = True
        self.cuts = 0
        self.refused = 0  # connections refused while cut
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def __aenter__(self) -> TcpRelay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        if self._drain_s <= 0:
            self.cut()
        pending = set(self._handlers)
        if pending and self._drain_s > 0:
            _, pending = await asyncio.wait(pending, timeout=self._drain_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until :meth:`restore`."""
        self.link_up = False
        self.cuts += 1
        for pair in list(self._links):
            for writer in pair:
                _reset(writer)
        self._links.clear()

    def restore(self) -> None:
        self.link_up = True

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if not self.link_up:
                self.refused += 1
                _reset(client_w)
                return
            try:
                server_r, server_w = await asyncio.open_connection("127.0.0.1", self._target)
            except OSError:
                _reset(client_w)
                return
            pair = (client_w, server_w)
            self._links.add(pair)
            await asyncio.gather(self._pump(client_r, server_w, up=True), self._pump(server_r, client_w, up=False))
            self._links.discard(pair)
        finally:
            self._handlers.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        try:
            while data := await reader.read(1 << 20):
                if up:
                    self.up += len(data)
                else:
                    self.down += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, like a link that died, not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
