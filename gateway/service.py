"""The gateway process: startup, main loop, graceful drain, shutdown.

Phases (uvicorn-style): *startup* opens the database, loads the tenant keys, binds the ZAP handler
then the ROUTER, loads the engine and starts the admin server; *serving* runs the owned tasks (ZAP,
receive loop, batcher, tenant-key watcher, maintenance) in one TaskGroup; *stop accepting* on the
first SIGTERM/SIGINT (new requests get 429 "shutting down"); *drain* waits for in-flight requests up
to ``server.drain_timeout_s``; *shutdown* cancels the tasks and closes everything in reverse order.
A second signal skips the drain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path

import zmq.asyncio

from gateway import admin
from gateway.accounting import Accounting
from gateway.admission import Admission
from gateway.auth import Reload, TenantTable, ZapHandler, watch_tenants
from gateway.batcher import Batcher
from gateway.dispatch import Dispatcher
from gateway.engine.engine import Engine
from gateway.engine.runtime import EngineOptions
from gateway.handlers import Handlers
from gateway.idempotency import IdempotencyTable, ReplyStore
from gateway.idempotency import create_schema as create_reply_schema
from gateway.prompts import PromptStore, Sharing
from gateway.prompts import create_schema as create_prompt_schema
from gateway.registry import AdapterRegistry
from gateway.registry import create_schema as create_registry_schema
from gateway.residency import Residency
from gateway.transport import RouterTransport, TransportCounters
from shared.bwlog import BandwidthLog
from shared.config.gateway import GatewayConfig
from shared.db import Database
from shared.errors import ModelSourceError
from shared.kernel_accounting import KernelAccounting
from shared.keys import load_secret
from shared.metering import ByteMeter
from shared.metrics import Registry
from shared.modelspec import default_cache_dir, find_prepared

log = logging.getLogger(__name__)

MAINTENANCE_S = 300.0
TENANT_POLL_S = 1.0


class GatewayService:
    def __init__(self, cfg: GatewayConfig, *, env: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self._env = dict(os.environ if env is None else env)
        self.registry = Registry()
        self.meter = ByteMeter()
        self.tenants = TenantTable(cfg.server.tenants_dir)
        self.endpoint = ""
        self.admin_url = ""
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._drained = asyncio.Event()
        self.dispatcher: Dispatcher | None = None
        self.engine: Engine | None = None
        self.batcher: Batcher | None = None
        self.residency: Residency | None = None
        self.adapters: AdapterRegistry | None = None
        self.db: Database | None = None
        self.zap: ZapHandler | None = None
        self.kernel: KernelAccounting | None = None

    # ---- control ---------------------------------------------------------------------------------

    def transport_counters(self) -> TransportCounters:
        return self._transport.counters

    def request_stop(self) -> None:
        """First call: stop accepting and drain. Second call: stop now."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    async def run(self) -> None:
        async with AsyncExitStack() as stack:
            await self._startup(stack)
            assert self.dispatcher is not None and self.batcher is not None and self.zap is not None
            transport = self._transport
            async with asyncio.TaskGroup() as tg:
                self._spawner = tg
                tasks = [
                    tg.create_task(self.zap.run(), name="zap"),
                    tg.create_task(self._receive(transport, self.dispatcher), name="receive"),
                    tg.create_task(self.batcher.run(), name="batcher"),
                    tg.create_task(watch_tenants(self.tenants, TENANT_POLL_S, self._on_reload), name="keys"),
                    tg.create_task(self._maintenance(), name="maintenance"),
                    tg.create_task(transport.watch(), name="connections"),
                ]
                self.ready.set()
                log.info("gateway serving on %s (admin %s)", self.endpoint, self.admin_url)
                await self._stop.wait()
                await self._drain(self.dispatcher)
                for task in tasks:
                    task.cancel()
            self.ready.clear()
        log.info("gateway stopped")

    # ---- phases ----------------------------------------------------------------------------------

    async def _startup(self, stack: AsyncExitStack) -> None:
        cfg = self.cfg
        data = cfg.storage.data_dir
        data.mkdir(parents=True, exist_ok=True)
        model_dir = self._model_dir()
        self.db = Database(data / "gateway.sqlite3")
        await self.db.open(create_prompt_schema, create_reply_schema, create_registry_schema)
        stack.push_async_callback(self.db.close)
        reload = self.tenants.reload()
        log.info(
            "tenants: %d allowed%s",
            len(self.tenants.tenants()),
            f", {len(reload.problems)} key files refused" if reload.problems else "",
        )
        ctx = zmq.asyncio.Context()
        stack.callback(ctx.term)
        self.zap = ZapHandler(ctx, self.tenants, cfg.server.zap_domain)
        self.zap.bind()  # before the ROUTER binds: no handshake without authentication
        stack.callback(self.zap.close)
        public, secret = load_secret(cfg.server.server_secret_key)
        self._transport = RouterTransport(
            ctx,
            cfg.server,
            public_key=public,
            secret_key=secret,
            max_frame_bytes=cfg.limits.max_frame_bytes,
            tenants=self.tenants,
        )
        self.endpoint = self._transport.bind()
        stack.callback(self._transport.close)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        stack.callback(executor.shutdown, wait=True)
        loop = asyncio.get_running_loop()
        self.engine = await loop.run_in_executor(executor, self._load_engine, model_dir)
        self._build(executor, stack)
        self.admin_url = await admin.start(self, stack)

    def _model_dir(self) -> Path:
        cache = self.cfg.model.cache_dir or default_cache_dir(self._env)
        found = find_prepared(cache, self.cfg.model.base)
        if found is None:
            raise ModelSourceError(
                f"no prepared model for base {self.cfg.model.base!r} in {cache}: "
                f"run `llmtwin model prepare --base {self.cfg.model.base} --cache-dir {cache}` first"
            )
        return found

    def _load_engine(self, model_dir: Path) -> Engine:
        m = self.cfg.model
        options = EngineOptions(threads=m.threads, slots=m.bank_slots, max_batch=self.cfg.batching.max_batch)
        return Engine(model_dir, options)

    def _build(self, executor: ThreadPoolExecutor, stack: AsyncExitStack) -> None:
        cfg, engine, db = self.cfg, self.engine, self.db
        assert engine is not None and db is not None
        log_path = cfg.log.bandwidth_log or cfg.storage.data_dir / "bandwidth.jsonl"
        bwlog = BandwidthLog(log_path, side="gateway", max_bytes=cfg.log.max_bytes, backups=cfg.log.backups)
        bwlog.start()
        stack.callback(bwlog.stop)
        accounting = Accounting(self.meter, bwlog, self.registry)
        self.kernel = accounting.kernel
        self._transport.attach(accounting.kernel)
        self.adapters = AdapterRegistry(
            cfg.storage.data_dir, engine.spec, keep_versions=cfg.storage.adapter_versions_kept
        )
        if engine.bank is not None and engine.bank.slots > 1:
            per_slot = max(1, engine.bank.nbytes // engine.bank.slots)
            budget_slots = max(1, cfg.storage.resident_budget_mb * 2**20 // per_slot)
            self.residency = Residency(engine.bank, capacity=min(engine.bank.slots - 1, budget_slots))
            for twin in cfg.sharing.pinned:
                self.residency.pin(twin)
        batch_sizes = self.registry.histogram(
            "llmtwin_gateway_batch_rows", "Rows per engine run", (1, 2, 4, 8, 16, 32, 64)
        )
        self.batcher = Batcher(
            engine.generator(),
            self.residency,
            max_batch=cfg.batching.max_batch,
            max_wait_s=cfg.batching.max_wait_ms / 1000,
            executor=executor,
            batch_sizes=batch_sizes,
        )
        sharing = Sharing(cfg.sharing.groups, cfg.sharing.regions)
        handlers = Handlers(
            db=db,
            registry=self.adapters,
            sharing=sharing,
            batcher=self.batcher,
            meter=self.meter,
            fingerprint=engine.spec.fingerprint,
            count_tokens=lambda text: len(engine.codec.encode(text)),
            max_prompt_tokens=cfg.model.max_context_tokens,
        )
        self.dispatcher = Dispatcher(
            transport=self._transport,
            handlers=handlers,
            idem=IdempotencyTable(),
            admission=Admission(cfg.admission, time.monotonic),
            db=db,
            accounting=accounting,
            limits=cfg.limits,
            spawn=self._spawn,
        )

    def _spawn(self, work: Awaitable[None]) -> object:
        task: asyncio.Task[None] = self._spawner.create_task(work)  # type: ignore[arg-type]
        self._inflight.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not self._inflight and self._stop.is_set():
            self._drained.set()

    async def _receive(self, transport: RouterTransport, dispatcher: Dispatcher) -> None:
        while True:
            inbound = await transport.recv()
            await dispatcher.handle(inbound)

    async def _drain(self, dispatcher: Dispatcher) -> None:
        dispatcher.accepting = False
        if not self._inflight:
            return
        log.info(
            "draining %d in-flight requests (up to %.0f s)",
            len(self._inflight),
            self.cfg.server.drain_timeout_s,
        )
        waits = [asyncio.ensure_future(self._drained.wait()), asyncio.ensure_future(self._force.wait())]
        _, pending = await asyncio.wait(
            waits, timeout=self.cfg.server.drain_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        for w in pending:
            w.cancel()
        for task in list(self._inflight):
            task.cancel()

    async def _on_reload(self, result: Reload) -> None:
        if result.added or result.removed:
            log.info("tenant keys reloaded: +%s -%s", list(result.added), list(result.removed))

    async def _maintenance(self) -> None:
        """Retention for prompts, stored replies and abandoned uploads."""
        assert self.db is not None and self.adapters is not None
        while True:
            now_ms = int(time.time() * 1000)
            kept_ms = int(self.cfg.storage.prompt_retention_h * 3600 * 1000)
            await self.db.run(PromptStore.prune, now_ms - kept_ms)
            await self.db.run(ReplyStore.prune, now_ms - int(self.cfg.admission.idempotency_ttl_s * 1000))
            await self.db.run(self.adapters.prune_uploads, now_ms - 7 * 86400 * 1000)
            await asyncio.sleep(MAINTENANCE_S)


async def serve(cfg: GatewayConfig, install_signals: Callable[[GatewayService], None] | None = None) -> None:
    service = GatewayService(cfg)
    if install_signals is not None:
        install_signals(service)
    await service.run()
