"""The batcher: the single owner of the engine's running batch.

Requests arrive through :meth:`Batcher.submit` (from the event loop) into per-tenant queues. One
task (:meth:`run`) owns the generator: between decode steps it admits queued rows (fair round-robin,
continuous batching), acquires each row's adapter slot from the residency LRU, runs ``add``/``step``
on the inference thread, and resolves each job's future when its row finishes. Deadlines are
checked every iteration: an expired queued job never starts, an expired running row is cancelled
(504 either way).

Slot acquisition and bank writes happen on the inference thread between steps, so a bank slot is
never rewritten while a run reads it; the adapter *file* is read before (``prepare``), off the
owner thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gateway.engine.generator import GenerationRequest, GenerationResult, Generator, TokenEvent
from gateway.residency import AdapterKey, Residency
from gateway.schedule import round_robin, should_launch
from shared.adapters import LoadedAdapter
from shared.errors import AdapterSlotsBusy, DeadlineExceeded, TwinError
from shared.metrics import Histogram

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One generation request waiting for or running in the batch."""

    tenant: str
    request: GenerationRequest  # its slot is filled in when it joins
    adapter: AdapterKey | None  # None: plain base model
    loader: Callable[[], LoadedAdapter] | None
    deadline: float | None  # monotonic seconds
    future: asyncio.Future[GenerationResult]
    enqueued: float = field(default_factory=time.monotonic)
    slot: int = 0


class Batcher:
    def __init__(
        self,
        generator: Generator,
        residency: Residency | None,
        *,
        max_batch: int,
        max_wait_s: float,
        executor: ThreadPoolExecutor,
        batch_sizes: Histogram | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gen = generator
        self._residency = residency
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._executor = executor
        self._clock = clock
        self._queues: dict[str, deque[Job]] = {}
        self._running: dict[str, Job] = {}
        self._last_tenant: str | None = None
        self._wake = asyncio.Event()
        self._batch_sizes = batch_sizes
        self.steps = 0

    # ---- called from the event loop --------------------------------------------------------------

    def submit(self, job: Job) -> None:
        self._queues.setdefault(job.tenant, deque()).append(job)
        self._wake.set()

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @property
    def running(self) -> int:
        return len(self._running)

    def idle(self) -> bool:
        return not self._running and not self.queued

    # ---- the owner task ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled. Cancelling fails nothing: the service drains before it cancels."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_work()
            self._expire_queued()
            joining = self._pick()
            if not joining and not self._running:
                continue
            try:
                outcome = await loop.run_in_executor(self._executor, self._iterate, joining)
            except TwinError as exc:
                for job in joining:
                    self._release(job)
                    _fail(job.future, exc)
                continue
            self._deliver(outcome)

    async def _wait_for_work(self) -> None:
        while True:
            oldest = min((q[0].enqueued for q in self._queues.values() if q), default=None)
            waited = 0.0 if oldest is None else self._clock() - oldest
            if self._running or should_launch(self.queued, 0, self._max_batch, waited, self._max_wait_s):
                return
            self._wake.clear()
            timeout = None if oldest is None else max(0.0, self._max_wait_s - waited)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return

    def _pick(self) -> list[Job]:
        room = self._max_batch - len(self._running)
        picked, self._last_tenant = round_robin(self._queues, room, self._last_tenant)
        return [job for _, job in picked]

    def _iterate(self, joining: list[Job]) -> _Outcome:
        """On the inference thread: slots for joiners, prefill them, then one step for the rest."""
        out = _Outcome()
        ready = self._acquire_slots(joining, out)
        had_running = len(self._gen) > 0
        if ready:
            self._add(ready, out)
        if had_running:
            out.events.extend(self._gen.step())
        self.steps += 1
        if self._batch_sizes is not None:
            self._batch_sizes.observe(len(self._gen) + sum(1 for e in out.events if e.finished))
        return out

    def _add(self, ready: list[Job], out: _Outcome) -> None:
        """Prefill joiners; if the batch refuses one (e.g. a prompt too long), add them one by one."""
        try:
            out.events.extend(self._gen.add([j.request for j in ready]))
            out.joined.extend(ready)
            return
        except TwinError:
            if len(ready) == 1:
                raise
        for job in ready:
            try:
                out.events.extend(self._gen.add([job.request]))
                out.joined.append(job)
            except TwinError as exc:
                out.failed.append((job, exc))

    def _acquire_slots(self, joining: list[Job], out: _Outcome) -> list[Job]:
        ready: list[Job] = []
        for job in joining:
            if job.adapter is None or self._residency is None or job.loader is None:
                ready.append(job)
                continue
            try:
                job.slot = self._residency.acquire(job.adapter, job.loader)
            except AdapterSlotsBusy:
                out.waiting.append(job)  # every slot busy: retry when rows finish
                continue
            except TwinError as exc:  # the adapter cannot be loaded (e.g. damaged on disk): fail, never requeue
                out.failed.append((job, exc))
                continue
            job.request = _with_slot(job.request, job.slot)
            ready.append(job)
        return ready

    def _deliver(self, out: _Outcome) -> None:
        for job in out.joined:
            self._running[job.request.request_id] = job
        for job, exc in out.failed:
            self._release(job)
            _fail(job.future, exc)
        for job in reversed(out.waiting):
            self._queues.setdefault(job.tenant, deque()).appendleft(job)
        for event in out.events:
            if event.result is None:
                continue
            if event.request_id not in self._running:
                continue
            job = self._running.pop(event.request_id)
            self._release(job)
            if not job.future.done():
                job.future.set_result(event.result)
        self._expire_running()

    def _expire_queued(self) -> None:
        now = self._clock()
        for queue in self._queues.values():
            for job in [j for j in queue if j.deadline is not None and j.deadline <= now]:
                queue.remove(job)
                _fail(job.future, DeadlineExceeded("deadline passed while queued"))

    def _expire_running(self) -> None:
        now = self._clock()
        for rid, job in list(self._running.items()):
            if (job.deadline is not None and job.deadline <= now) or job.future.cancelled():
                self._gen.cancel(rid)
                self._running.pop(rid)
                self._release(job)
                _fail(job.future, DeadlineExceeded("deadline passed while generating"))

    def _release(self, job: Job) -> None:
        if job.adapter is not None and self._residency is not None and job.slot:
            self._residency.release(job.slot)


@dataclass
class _Outcome:
    """What one iteration on the inference thread produced, applied on the event loop."""

    events: list[TokenEvent] = field(default_factory=list)
    joined: list[Job] = field(default_factory=list)
    waiting: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, TwinError]] = field(default_factory=list)


def _with_slot(request: GenerationRequest, slot: int) -> GenerationRequest:
    return GenerationRequest(
        request.request_id, request.prompt, slot, request.sampling, request.max_new_tokens, request.stop
    )


def _fail(future: asyncio.Future[GenerationResult], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
