"""From an authenticated inbound message to its reply: decode, idempotency, admission, handler.

For every message, in order:

1. a tenant whose key was revoked after the handshake gets 403 (if its header names a rid) or a
   counted drop; undecodable input without a trustworthy rid is dropped and counted per tenant;
2. the request's bytes are metered and logged;
3. FETCH, PING and duplicates are answered from the idempotency table (replayed / 409);
4. queries pass admission (429 with retry_after_ms), are ACCEPTED, and finish in the batcher;
5. the outcome is stored before it is sent, so a crash never executes a rid twice.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.accounting import Accounting
from gateway.admission import Admission
from gateway.handlers import Handlers
from gateway.idempotency import IdempotencyTable, ReplyStore, State, StoredReply, cacheable
from gateway.transport import Inbound, RouterTransport
from shared.db import Database
from shared.errors import (
    Forbidden,
    FrameCountError,
    InFlight,
    InternalError,
    RateLimited,
    TwinError,
    UnknownRequest,
    WireError,
)
from shared.protocol import Envelope, Limits, decode, encode, encode_result, pack_body, peek_rid, unpack_body
from shared.protocol import messages as m
from shared.protocol.messages import Accounting as Acct

log = logging.getLogger(__name__)

LONG = (m.Query, m.InterQuery)


@dataclass(frozen=True, slots=True)
class Outcome:
    reply: m.Message
    cache: bool


class Dispatcher:
    def __init__(
        self,
        *,
        transport: RouterTransport,
        handlers: Handlers,
        idem: IdempotencyTable,
        admission: Admission,
        db: Database,
        accounting: Accounting,
        limits: Limits,
        spawn: Callable[[Awaitable[None]], object],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._transport = transport
        self._handlers = handlers
        self._idem = idem
        self._admission = admission
        self._db = db
        self._acct = accounting
        self._limits = limits
        self._spawn = spawn
        self._clock = clock
        self.accepting = True

    async def handle(self, inbound: Inbound) -> None:
        if inbound.tenant is None:
            await self._refuse_revoked(inbound)
            return
        tenant = inbound.tenant
        try:
            if inbound.parts != len(inbound.frames):
                raise FrameCountError(f"expected 1 frame, got {inbound.parts}")
            env = decode(inbound.frames, side="request", limits=self._limits)
        except WireError as exc:
            self._acct.dropped(tenant, exc.code)
            if exc.rid is not None:
                await self._send(tenant, inbound.peer, exc.rid, _error(exc))
            return
        self._acct.inbound(tenant, env)
        await self._route(tenant, inbound.peer, env)

    async def _refuse_revoked(self, inbound: Inbound) -> None:
        self._acct.dropped("<revoked>", "revoked")
        rid = peek_rid(inbound.frames, self._limits) if inbound.parts == 1 else None
        if rid is not None:
            await self._send("<revoked>", inbound.peer, rid, _error(Forbidden("key revoked or unknown")))

    async def _route(self, tenant: str, peer: bytes, env: Envelope) -> None:
        msg, rid = env.message, env.rid
        if isinstance(msg, m.Ping):
            await self._send(tenant, peer, rid, m.Pong(msg.sent_ms, int(self._clock() * 1000)))
            return
        if isinstance(msg, m.Fetch):
            await self._fetch(tenant, peer, rid, msg.target)
            return
        state, stored = await self._lookup(tenant, rid)
        if state is State.DONE and stored is not None:
            await self._send(tenant, peer, rid, _replayed(stored))
            return
        if state is State.IN_FLIGHT:
            self._idem.redirect(tenant, rid, peer)
            await self._send(tenant, peer, rid, _error(InFlight("this rid is being executed")))
            return
        if not self.accepting:
            await self._send(tenant, peer, rid, _error(_draining()))
            return
        self._idem.begin(tenant, rid, peer)
        if isinstance(msg, LONG):
            await self._start_long(tenant, peer, env)
        else:
            self._spawn(self._run(tenant, env, self._short(tenant, msg)))

    async def _lookup(self, tenant: str, rid: bytes) -> tuple[State, StoredReply | None]:
        state, stored = self._idem.lookup(tenant, rid)
        if state is State.NEW:
            stored = await self._db.run(ReplyStore.get, tenant, rid)
            if stored is not None:
                self._idem.remember(tenant, rid, stored)
                return State.DONE, stored
        return state, stored

    async def _fetch(self, tenant: str, peer: bytes, rid: bytes, target: bytes) -> None:
        state, stored = await self._lookup(tenant, target)
        if state is State.DONE and stored is not None:
            await self._send(tenant, peer, target, _replayed(stored))
        elif state is State.IN_FLIGHT:
            self._idem.redirect(tenant, target, peer)
            await self._send(tenant, peer, target, m.Accepted(replayed=True))
        else:
            # answered under the target rid: that is what the fetching client waits for
            await self._send(tenant, peer, target, _error(UnknownRequest("no such request")))

    async def _start_long(self, tenant: str, peer: bytes, env: Envelope) -> None:
        try:
            self._admission.admit(tenant)
        except WireError as exc:
            self._idem.finish(tenant, env.rid, None)
            await self._send(tenant, peer, env.rid, _error(exc))
            return
        await self._send(tenant, peer, env.rid, m.Accepted(queue_depth=self._admission.queued))
        self._spawn(self._run(tenant, env, self._long(tenant, env)))

    async def _short(self, tenant: str, msg: m.Message) -> Outcome:
        h = self._handlers
        result: object
        if isinstance(msg, m.Hello):
            result = await h.hello(tenant, msg)
        elif isinstance(msg, m.StateUpload):
            result = await h.state(tenant, msg)
        elif isinstance(msg, m.AdapterBegin):
            result = await h.adapter_begin(tenant, msg)
        elif isinstance(msg, m.AdapterChunk):
            result = await h.adapter_chunk(tenant, msg)
        elif isinstance(msg, m.AdapterCommit):
            result = await h.adapter_commit(tenant, msg)
        elif isinstance(msg, m.Stats):
            return Outcome(m.Final(msg.TAG, encode_result(h.stats(tenant, msg))), cache=False)
        else:
            raise InternalError("no handler for this command")
        return Outcome(m.Final(msg.TAG, encode_result(result)), cache=True)

    async def _long(self, tenant: str, env: Envelope) -> Outcome:
        msg = env.message
        assert isinstance(msg, LONG)
        deadline = time.monotonic() + env.header.deadline_ms / 1000 if env.header.deadline_ms else None
        started = time.monotonic()
        try:
            answer = await self._handlers.query(tenant, msg, deadline, f"{tenant}:{env.rid.hex()}")
        finally:
            self._admission.release(tenant)
        self._admission.est_service_s = 0.8 * self._admission.est_service_s + 0.2 * (
            time.monotonic() - started
        )
        self._acct.billed(tenant, answer.tokens_in, answer.tokens_out)
        self._acct.answered(tenant, answer.result)
        acct = Acct(env.sizes.compressed, 0, answer.tokens_in, answer.tokens_out)
        return Outcome(m.Final(msg.TAG, encode_result(answer.result), acct=acct), cache=True)

    async def _run(self, tenant: str, env: Envelope, work: Awaitable[Outcome]) -> None:
        """Execute, store the outcome (if definitive), then send it to whoever asked last."""
        try:
            outcome = await work
        except WireError as exc:
            outcome = Outcome(_error(exc), cache=cacheable(exc.status))
        except TwinError as exc:
            log.warning("request %s of %s failed: %s", env.rid.hex(), tenant, exc)
            outcome = Outcome(_error(InternalError("request failed")), cache=False)
        except Exception:
            log.exception("request %s of %s crashed", env.rid.hex(), tenant)
            outcome = Outcome(_error(InternalError("internal error")), cache=False)
        stored = StoredReply(outcome.reply.TAG, pack_body(outcome.reply)) if outcome.cache else None
        if stored is not None:
            try:
                await self._db.run(ReplyStore.put, tenant, env.rid, stored, int(self._clock() * 1000))
            except WireError as exc:  # disk full: an outcome we cannot keep is not sent as final
                log.warning("reply to %s of %s not stored (%s): answered %s", env.rid.hex(), tenant, exc, exc.code)
                outcome, stored = Outcome(_error(exc), cache=False), None
        peer = self._idem.peer(tenant, env.rid)
        self._idem.finish(tenant, env.rid, stored)
        if peer:
            await self._send(tenant, peer, env.rid, outcome.reply)

    async def _send(self, tenant: str, peer: bytes, rid: bytes, reply: m.Message) -> None:
        encoded = encode(reply, rid=rid, limits=self._limits)
        sent = await self._transport.send(peer, encoded.frames)
        self._acct.outbound(tenant, rid, reply, encoded, sent)


def _error(exc: WireError) -> m.Error:
    return m.Error(exc.status, exc.code, exc.detail[:256], exc.retry_after_ms)


def _draining() -> WireError:
    return RateLimited("gateway is shutting down", retry_after_ms=1000)


def _replayed(stored: StoredReply) -> m.Message:
    message = unpack_body(stored.tag, stored.body)
    if dataclasses.is_dataclass(message) and hasattr(message, "replayed"):
        return dataclasses.replace(message, replayed=True)
    return message
