"""Tenant authentication: a ZAP handler for CURVE and the live tenant allow-list.

DESIGN §6: a CURVE server with no ZAP handler in its context accepts *any* client key. The gateway
therefore binds this handler before its ROUTER binds, sets a ZAP domain with ZAP_ENFORCE_DOMAIN, and
answers only that domain. The ZAP User-Id is the client's z85 public key; the transport maps it to a
tenant through the live table on *every* message, so removing a tenant's key file cuts that tenant
off at its next message even on a connection that was authenticated earlier.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio
from zmq.utils import z85

from shared.keys import scan_tenants_report

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"


@dataclass(frozen=True, slots=True)
class Reload:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    problems: tuple[str, ...]


class TenantTable:
    """Public key (z85) → tenant id, reloaded from a directory of public certificates."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._table: dict[bytes, str] = {}
        self._signature: tuple[tuple[str, int, int], ...] | None = None

    def tenant_for(self, public_z85: bytes) -> str | None:
        return self._table.get(public_z85)

    def tenants(self) -> set[str]:
        return set(self._table.values())

    def reload(self) -> Reload:
        """Re-read the directory now; the new table replaces the old one in one assignment."""
        before = self.tenants()
        self._signature = self._current_signature()
        table, problems = scan_tenants_report(self.directory)
        self._table = table
        after = self.tenants()
        for problem in problems:
            log.warning("tenant keys: %s", problem)
        return Reload(tuple(sorted(after - before)), tuple(sorted(before - after)), tuple(problems))

    def reload_if_changed(self) -> Reload | None:
        if self._current_signature() == self._signature:
            return None
        return self.reload()

    def _current_signature(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = sorted(self.directory.iterdir())
        except OSError:
            return ()
        sig = []
        for p in entries:
            try:
                st = p.stat()
            except OSError:
                continue
            sig.append((p.name, st.st_mtime_ns, st.st_size))
        return tuple(sig)


@dataclass(slots=True)
class ZapCounters:
    allowed: int = 0
    denied: int = 0
    wrong_domain: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class ZapHandler:
    """Answers ZAP requests for one domain from a TenantTable. Bind it before the server socket."""

    def __init__(self, ctx: zmq.asyncio.Context, table: TenantTable, domain: str) -> None:
        self._ctx = ctx
        self._table = table
        self._domain = domain.encode()
        self._socket: zmq.asyncio.Socket | None = None
        self.counters = ZapCounters()

    def bind(self) -> None:
        sock = self._ctx.socket(zmq.REP)
        sock.linger = 0
        sock.bind(ZAP_ENDPOINT)
        self._socket = sock

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    async def run(self) -> None:
        """Serve ZAP requests until cancelled."""
        assert self._socket is not None, "bind() first"
        while True:
            request = await self._socket.recv_multipart()
            await self._socket.send_multipart(self.answer(request))

    def answer(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply frames for one request (RFC 27)."""
        if len(request) < 6:
            return self._reply(b"", b"500", b"malformed ZAP request", b"")
        version, request_id, domain, _address, _identity, mechanism, *credentials = request
        if version != b"1.0":
            return self._reply(request_id, b"500", b"unsupported ZAP version", b"")
        if domain != self._domain:
            self.counters.wrong_domain += 1
            return self._deny(request_id, "wrong domain")
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            return self._deny(request_id, "mechanism")
        public = z85.encode(credentials[0])
        if self._table.tenant_for(public) is None:
            return self._deny(request_id, "unknown key")
        self.counters.allowed += 1
        return self._reply(request_id, b"200", b"OK", public)

    def _deny(self, request_id: bytes, reason: str) -> list[bytes]:
        self.counters.denied += 1
        self.counters.by_reason[reason] = self.counters.by_reason.get(reason, 0) + 1
        return self._reply(request_id, b"400", b"not allowed", b"")

    @staticmethod
    def _reply(request_id: bytes, status: bytes, text: bytes, user_id: bytes) -> list[bytes]:
        return [b"1.0", request_id, status, text, user_id, b""]


async def watch_tenants(
    table: TenantTable, interval_s: float, on_reload: Callable[[Reload], Awaitable[None]]
) -> None:
    """Poll the tenant directory's listing and reload on change, until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        result = table.reload_if_changed()
        if result is not None:
            await on_reload(result)
