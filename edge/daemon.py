"""The edge daemon: what systemd runs on a device (``llmtwin edge --config <profile>.toml``).

Startup opens the state store and outbox (one SQLite file under ``device.data_dir``), loads the
sources' static facts, builds the compressor, connects the uplink and starts the admin server, then
says READY=1. Serving runs every task in one TaskGroup: one coordinator per source, the flusher,
the ticker (cadence stretched by the daily data budget), the uplink, the fine-tune scheduler
(edge.trainer: λ-periodic LoRA rounds in a child process), the watchdog (WATCHDOG=1 only
while readings, ticks and the database make progress), the status line and retention.
SIGHUP reloads the profile (a bad file keeps the old one); SIGTERM says STOPPING=1, takes a last
tick, lets the uplink deliver for up to ``drain_s`` and exits; a second SIGTERM exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path

from edge import admin
from edge.accounting import EdgeAccounting
from edge.budget import DataBudget
from edge.client import ClientKeys, TwinClient
from edge.compressor import coalesce
from edge.finetune.history import create_schema as create_history_schema
from edge.outbox import Outbox
from edge.outbox import create_schema as create_outbox_schema
from edge.pipeline import Pipeline
from edge.sources import Coordinator, Simulator, build_sources
from edge.state_store import StateStore
from edge.trainer import Trainer
from edge.uplink import Uplink
from shared.bwlog import BandwidthLog
from shared.capture import PayloadCapture
from shared.config import EdgeConfig, load_config
from shared.config.edge import SimulatorSource
from shared.db import Database
from shared.errors import ConfigError
from shared.kernel_accounting import KernelAccounting
from shared.metering import ByteMeter
from shared.metrics import Registry
from shared.protocol import messages as m
from shared.systemd import Notifier

log = logging.getLogger(__name__)

SOFTWARE = "llmtwin-edge/0.1"
FLUSH_S = 0.25
STATUS_S = 5.0
MAINTENANCE_S = 600.0


class EdgeDaemon:
    def __init__(
        self,
        cfg: EdgeConfig,
        *,
        config_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        drain_s: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.env = dict(os.environ if env is None else env)
        self.drain_s = drain_s
        self.notifier = Notifier(self.env)
        self.registry = Registry()
        self.meter = ByteMeter()
        self.budget = DataBudget(cfg.budget.daily_bytes, time.time)
        self.ready = asyncio.Event()
        self.admin_url = ""
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._reload = asyncio.Event()
        self.db = Database(cfg.device.data_dir / "edge.sqlite3")
        self.simulator: Simulator | None = None
        self.coordinators: list[Coordinator] = []
        self.pipeline = Pipeline(cfg, self.db, now=self.now, on_prompt=self._on_prompt)
        self.uplink: Uplink | None = None
        self.trainer: Trainer | None = None
        self.kernel: KernelAccounting | None = None
        self._sim_epoch = 0.0
        self._sim_speed = 1.0

    # ---- control -----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def now(self) -> float:
        """The readings' clock: scenario time under the simulator, wall time otherwise."""
        if self.simulator is not None:
            return self._sim_epoch + self.simulator.position_s
        return time.time()

    def tick_wait_s(self) -> float:
        """Real seconds until the next tick: the tick period, stretched by the budget, at sim speed."""
        period = self.budget.cadence(self.cfg.sampling.tick_s)
        return period / self._sim_speed

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def run(self) -> None:
        async with AsyncExitStack() as stack:
            client = await self._startup(stack)
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(c.run(), name=f"source:{c.source.name}") for c in self.coordinators]
                assert self.uplink is not None
                uplink_task = tg.create_task(self.uplink.run(), name="uplink")
                tasks += [
                    tg.create_task(self._flusher(), name="flush"),
                    tg.create_task(self._ticker(), name="tick"),
                    tg.create_task(self._watchdog(), name="watchdog"),
                    tg.create_task(self._status(), name="status"),
                    tg.create_task(self._maintenance(), name="maintenance"),
                    tg.create_task(self._reloader(), name="reload"),
                ]
                assert self.trainer is not None
                tasks.append(tg.create_task(self.trainer.run(), name="finetune"))
                self.ready.set()
                self.notifier.ready(self.status_line())
                log.info("edge daemon %s serving (admin %s)", self.cfg.device.twin_id, self.admin_url)
                await self._stop.wait()
                self.notifier.stopping()
                for task in tasks:
                    task.cancel()
                await self._drain(uplink_task)
            del client
        log.info("edge daemon stopped")

    async def _startup(self, stack: AsyncExitStack) -> TwinClient:
        cfg = self.cfg
        cfg.device.data_dir.mkdir(parents=True, exist_ok=True)
        await self.db.open(StateStore.create_schema, create_outbox_schema, create_history_schema)
        stack.push_async_callback(self.db.close)
        sources = build_sources(cfg.sources, cfg.device.twin_id)
        self.simulator = next((s for s in sources if isinstance(s, Simulator)), None)
        if self.simulator is not None:
            self._sim_epoch = datetime.fromisoformat(self.simulator.scenario.start_iso).timestamp()
            self._sim_speed = next(s.speed for s in cfg.sources if isinstance(s, SimulatorSource))
        static = [r for s in sources for r in s.static_records()]
        await self.pipeline.start(static)
        self.coordinators = [Coordinator(s, self.pipeline.sink) for s in sources]
        bwlog = BandwidthLog(
            cfg.log.bandwidth_log or cfg.device.data_dir / "bandwidth.jsonl",
            side="edge",
            max_bytes=cfg.log.max_bytes,
            backups=cfg.log.backups,
        )
        bwlog.start()
        stack.callback(bwlog.stop)
        accounting = EdgeAccounting(cfg.device.twin_id, self.meter, bwlog, self.registry, self.budget)
        keys = ClientKeys.from_files(cfg.gateway.server_public_key, cfg.gateway.client_secret_key)
        self.kernel = accounting.kernel
        capture = PayloadCapture(cfg.log.payload_capture) if cfg.log.payload_capture is not None else None
        if capture is not None:
            stack.callback(capture.close)
            log.warning("capturing every payload sent to %s (log.payload_capture)", capture.path)
        client = await stack.enter_async_context(
            TwinClient(cfg.gateway.endpoint, keys, on_bytes=accounting, connections=accounting.kernel, capture=capture)
        )
        hello = m.Hello(cfg.device.twin_id, SOFTWARE, cfg.device.profile, "", len(static))
        twin = cfg.device.twin_id
        self.uplink = Uplink(
            client,
            self.db,
            hello,
            cfg.gateway,
            merge=lambda texts: coalesce(texts, twin),
            on_resync=self.pipeline.request_keyframe,
        )
        self.trainer = Trainer(
            cfg,
            self.db,
            now=self.now,
            speed=self._sim_speed,
            env=self.env,
            served_version=self._served_version,
            on_upload=self.uplink.wake,
        )
        self.admin_url = await admin.start(self, stack)
        return client

    async def _drain(self, uplink_task: asyncio.Task[None]) -> None:
        """Last tick, then give the uplink ``drain_s`` to deliver what is pending."""
        with contextlib.suppress(Exception):
            await self.pipeline.tick()
        assert self.uplink is not None
        self.uplink.wake()
        waiter = asyncio.ensure_future(self.uplink.idle.wait())
        force = asyncio.ensure_future(self._force.wait())
        await asyncio.wait([waiter, force], timeout=self.drain_s, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        force.cancel()
        uplink_task.cancel()

    # ---- tasks ---------------------------------------------------------------------------------------

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.pipeline.flush()

    async def _ticker(self) -> None:
        """Ticks on a fixed schedule (not "wait after work"); when a tick overruns, the next one starts
        at once and the schedule restarts from there instead of bursting to catch up."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.tick_wait_s()
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = loop.time()
            await self.pipeline.tick()

    def _served_version(self) -> int:
        return self.uplink.stats.served_adapter_version if self.uplink is not None else 0

    def _on_prompt(self) -> None:
        if self.uplink is not None:
            self.uplink.wake()

    async def _watchdog(self) -> None:
        """WATCHDOG=1 at half the systemd interval, only while the daemon really makes progress."""
        interval = self.notifier.watchdog_s
        if interval is None:
            return
        while True:
            await asyncio.sleep(interval / 2)
            if await self.healthy(stale_after_s=interval):
                self.notifier.watchdog()
            else:
                log.error("watchdog: no progress for %.0f s; not petting systemd's watchdog", interval)

    async def healthy(self, stale_after_s: float) -> bool:
        """The database answers and ticks (or flushes) happened recently."""
        try:
            await asyncio.wait_for(self.db.run(Outbox.counts), timeout=stale_after_s / 2)
        except TimeoutError:
            return False
        return time.monotonic() - self.pipeline.stats.last_progress < max(stale_after_s, 3 * self.tick_wait_s())

    def status_line(self) -> str:
        s = self.pipeline.stats
        up = self.uplink.stats if self.uplink is not None else None
        acked = up.acked if up else 0
        sources = ", ".join(f"{c.stats.source} {c.stats.state}" for c in self.coordinators)
        return (
            f"{s.readings} readings, {s.prompts} prompts ({s.keyframes} key), {acked} acked, "
            f"{self.budget.used_today} B today; sources: {sources}"
            + (f"; {self.trainer.status_text()}" if self.trainer is not None else "")
        )

    async def _status(self) -> None:
        watchdog = self.notifier.watchdog_s
        period = min(STATUS_S, watchdog / 2) if watchdog else STATUS_S
        while True:
            await asyncio.sleep(period)
            self.notifier.status(self.status_line())

    async def _maintenance(self) -> None:
        while True:
            retention_s = self.cfg.sampling.history_retention_h * 3600
            await self.db.run(StateStore.prune, self.now() - retention_s)
            await self.db.run(Outbox.prune, time.time() - 7 * 86400)
            await asyncio.sleep(MAINTENANCE_S)

    async def _reloader(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            self.notifier.reloading()
            await self.reload()
            self.notifier.ready(self.status_line())

    async def reload(self) -> bool:
        """Re-read the profile. A bad file is logged and the running config stays.

        Deadbands, keyframe and tick periods, sharing and the data budget apply at once (the next
        prompt is a keyframe); sources and the gateway link apply at the next restart.
        """
        if self.config_path is None:
            return False
        try:
            cfg = load_config(EdgeConfig, self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return False
        if cfg.device.twin_id != self.cfg.device.twin_id or cfg.device.data_dir != self.cfg.device.data_dir:
            log.error("reload refused: twin_id and data_dir cannot change while running")
            return False
        self.cfg = cfg
        self.budget.daily_bytes = cfg.budget.daily_bytes
        await self.pipeline.reconfigure(cfg)
        if self.trainer is not None:
            self.trainer.reconfigure(cfg)
        log.info("configuration reloaded from %s", self.config_path)
        return True
