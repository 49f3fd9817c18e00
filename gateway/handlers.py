"""What each request does. One method per command; each returns the result struct for its FINAL.

Every method receives the tenant the transport authenticated (never a name from the payload) and
checks that the tenant owns the twin it names before touching anything (403 otherwise).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.batcher import Batcher, Job
from gateway.engine.generator import GenerationRequest, GenerationResult
from gateway.engine.sampling import SamplingParams
from gateway.engine.text import chat_prompt
from gateway.prompts import PromptStore, Sharing
from gateway.queries import Context, fact_context, inter_context, twin_context
from gateway.registry import AdapterRef, AdapterRegistry
from gateway.residency import AdapterKey
from shared.adapters import LoadedAdapter
from shared.db import Database
from shared.errors import AdapterError, AdapterUnavailable, Forbidden, TooLarge
from shared.keys import owns
from shared.metering import ByteMeter
from shared.protocol import messages as m
from shared.protocol.results import (
    HelloResult,
    QueryResult,
    StateAck,
    StatsResult,
    TypeCounters,
    UploadStatus,
)


@dataclass(frozen=True, slots=True)
class Answer:
    result: QueryResult
    tokens_in: int
    tokens_out: int


class Handlers:
    def __init__(
        self,
        *,
        db: Database,
        registry: AdapterRegistry,
        sharing: Sharing,
        batcher: Batcher,
        meter: ByteMeter,
        fingerprint: str,
        count_tokens: Callable[[str], int],
        max_prompt_tokens: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._registry = registry
        self._sharing = sharing
        self._batcher = batcher
        self._meter = meter
        self._fingerprint = fingerprint
        self._count_tokens = count_tokens
        self._max_prompt_tokens = max_prompt_tokens
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @staticmethod
    def check_owner(tenant: str, twin_id: str) -> None:
        if not owns(tenant, twin_id):
            raise Forbidden("this tenant does not own that twin")

    # ---- small requests ------------------------------------------------------------------------

    async def hello(self, tenant: str, msg: m.Hello) -> HelloResult:
        self.check_owner(tenant, msg.twin_id)
        await self._db.run(
            PromptStore.register_twin, msg.twin_id, tenant, msg.profile, msg.software, self._now_ms()
        )
        active = await self._db.run(self._registry.active, msg.twin_id)
        last = await self._db.run(PromptStore.last_seq, msg.twin_id)
        return HelloResult(
            msg.twin_id, tenant, self._fingerprint, active.version if active else 0, last, self._now_ms()
        )

    async def state(self, tenant: str, msg: m.StateUpload) -> StateAck:
        self.check_owner(tenant, msg.twin_id)
        stored = await self._db.run(PromptStore.put, msg, self._now_ms())
        return StateAck(msg.seq, stored)

    async def adapter_begin(self, tenant: str, msg: m.AdapterBegin) -> UploadStatus:
        self.check_owner(tenant, msg.twin_id)
        return await self._db.run(self._registry.begin, tenant, msg, self._now_ms())

    async def adapter_chunk(self, tenant: str, msg: m.AdapterChunk) -> UploadStatus:
        return await self._db.run(self._registry.chunk, tenant, msg, self._now_ms())

    async def adapter_commit(self, tenant: str, msg: m.AdapterCommit) -> UploadStatus:
        return await self._db.run(self._registry.commit, tenant, msg, self._now_ms())

    def stats(self, tenant: str, msg: m.Stats) -> StatsResult:
        counters = tuple(
            TypeCounters(k.type, k.direction, c.messages, c.payload, c.compressed, c.frame)
            for k, c in self._meter.rows()
            if k.tenant == tenant
        )
        return StatsResult(tenant, counters[:256])

    # ---- queries -------------------------------------------------------------------------------

    async def query(
        self, tenant: str, msg: m.Query | m.InterQuery, deadline: float | None, key: str
    ) -> Answer:
        """The twin's answer, on its adapter in service. One exception: a question about the state (the
        gateway found state or computed an aggregate for its prompt), when that adapter read the device's
        held-out state questions worse than the base model alone (its round's scores,
        :attr:`AdapterRef.reads_state_worse`; a short cold round can leave it so), runs on the base model
        and says so (``base_only``). Questions to the adapter alone (``context = "none"``) and questions
        no state matched always run on it: only it knows the static facts."""
        self.check_owner(tenant, msg.twin_id)
        own = await self._db.run(PromptStore.latest_state, msg.twin_id)
        if isinstance(msg, m.InterQuery):
            circle = self._sharing.circle(msg.twin_id, msg.scope)
            shared = await self._db.run(PromptStore.shared_states, circle, msg.scope)
            context = inter_context(msg.twin_id, msg.question, own, shared)
        elif msg.context == "none":
            context = fact_context(msg.question)
        else:
            context = twin_context(msg.twin_id, msg.question, own)
        ref = await self._db.run(self._registry.active, msg.twin_id)
        serve = None if ref is None or (context.about_state and ref.reads_state_worse) else ref
        request = self._generation_request(key, context, msg)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[GenerationResult] = loop.create_future()
        adapter = AdapterKey(serve.twin_id, serve.version) if serve is not None else None
        loader = (lambda: self._load(serve)) if serve is not None else None
        self._batcher.submit(Job(tenant, request, adapter, loader, deadline, future))
        result = await future
        answer = QueryResult(
            result.text.strip(),
            msg.twin_id,
            ref.version if ref else 0,
            context.used[:1024],
            context.aggregates,
            result.finish_reason,
            base_only=ref is not None and serve is None,
        )
        return Answer(answer, result.prompt_tokens, len(result.token_ids))

    def _generation_request(
        self, key: str, context: Context, msg: m.Query | m.InterQuery
    ) -> GenerationRequest:
        prompt = chat_prompt(context.prompt, system=context.system)
        n = self._count_tokens(prompt)
        if n + msg.max_new_tokens > self._max_prompt_tokens:
            raise TooLarge(
                f"question and context take {n} tokens; limit {self._max_prompt_tokens} "
                "including max_new_tokens"
            )
        greedy = msg.temperature == 0.0
        sampling = SamplingParams(
            temperature=msg.temperature, top_p=1.0 if greedy else msg.top_p, seed=msg.seed
        )
        return GenerationRequest(key, prompt, 0, sampling, msg.max_new_tokens, msg.stop)

    def _load(self, ref: AdapterRef) -> LoadedAdapter:
        try:
            return self._registry.load(ref)
        except AdapterError as exc:
            raise AdapterUnavailable(f"adapter cannot be loaded: {type(exc).__name__}") from exc
