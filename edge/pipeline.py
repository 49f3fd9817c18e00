"""The edge's data path: readings → state store → compressor → outbox.

Sources push readings from the event loop into a bounded buffer; :meth:`Pipeline.flush` writes them
to the state store in one transaction on the database thread. :meth:`Pipeline.tick` asks the
compressor what changed since the gateway's view and stores the resulting prompt in the outbox with
its seq and rid. The clock that drives ticks is the clock of the readings: wall time on a real
device, scenario time when the simulator replays a day at an accelerated speed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.compressor import Compressor, CompressorSettings
from edge.outbox import Outbox
from edge.readings import Reading, StaticRecord
from edge.state_store import AttributePolicy, StateStore
from edge.uplink import state_body
from shared.config.edge import EdgeConfig
from shared.db import Database

log = logging.getLogger(__name__)

MAX_BUFFER = 10_000


@dataclass
class PipelineStats:
    readings: int = 0
    dropped_readings: int = 0
    changes: int = 0
    ticks: int = 0
    prompts: int = 0
    keyframes: int = 0
    last_progress: float = 0.0  # monotonic time of the last flush or tick that did work


class Pipeline:
    def __init__(
        self, cfg: EdgeConfig, db: Database, *, now: Callable[[], float], on_prompt: Callable[[], None]
    ) -> None:
        self.cfg = cfg
        self._db = db
        self._now = now
        self._on_prompt = on_prompt
        self.store = StateStore(AttributePolicy.from_config(cfg.state))
        self.compressor: Compressor | None = None
        self._buffer: list[Reading] = []
        self.stats = PipelineStats(last_progress=time.monotonic())

    async def start(self, static: list[StaticRecord]) -> None:
        """Load static facts, then build the compressor with everything known to be sensitive."""
        await self._db.run(self.store.put_static, static, self._now())
        await self.reconfigure(self.cfg)

    async def reconfigure(self, cfg: EdgeConfig) -> None:
        self.cfg = cfg
        self.store = StateStore(AttributePolicy.from_config(cfg.state))
        sensitive = await self._db.run(self.store.sensitive_attributes)
        settings = CompressorSettings.from_config(cfg, sensitive)
        previous = self.compressor
        self.compressor = Compressor.from_settings(cfg.device.twin_id, settings)
        if previous is not None:
            self.compressor.request_keyframe()  # new deadbands: resync the gateway's view

    def sink(self, reading: Reading) -> None:
        """Called by sources on the event loop: buffer (bounded) until the next flush."""
        if len(self._buffer) >= MAX_BUFFER:
            self.stats.dropped_readings += 1
            return
        self._buffer.append(reading)
        self.stats.readings += 1

    async def flush(self) -> int:
        if not self._buffer:
            return 0
        batch, self._buffer = self._buffer, []
        changed = await self._db.run(self.store.apply_many, batch)
        self.stats.changes += changed
        self.stats.last_progress = time.monotonic()
        return changed

    async def tick(self) -> bool:
        """One compressor tick; True if a prompt was queued."""
        assert self.compressor is not None, "start() first"
        await self.flush()
        now = self._now()
        current = await self._db.run(StateStore.current)
        out = self.compressor.tick(now, current)
        self.stats.ticks += 1
        self.stats.last_progress = time.monotonic()
        if out is None:
            return False
        twin, share = self.cfg.device.twin_id, self.cfg.state.share

        def build(seq: int) -> bytes:
            return state_body(twin, seq, int(now * 1000), out.kind, out.text, share)

        await self._db.run(Outbox.put_state, twin, build, out.kind, now)
        self.stats.prompts += 1
        self.stats.keyframes += out.kind == "key"
        self._on_prompt()
        return True

    def request_keyframe(self) -> None:
        if self.compressor is not None:
            self.compressor.request_keyframe()
