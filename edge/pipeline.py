"""The edge's data path: readings → state store → compressor → outbox.

Sources push readings from the event loop into a bounded buffer; :meth:`Pipeline.flush` writes them
to the state store in one transaction on the database thread. :meth:`Pipeline.tick` asks the
compressor what changed since the gateway's view and stores the resulting prompt in the outbox with
its seq and rid. The clock that drives ticks is the clock of the readings: wall time on a real
device, scenario time when the simulator replays a day at an accelerated speed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from edge.compressor import Compressor, CompressorSettings
from edge.outbox import Outbox
from edge.readings import Reading, StaticRecord
from edge.state_store import AttributePolicy, StateStore
from edge.uplink import state_body
from shared.config.edge import EdgeConfig
from shared.db import Database
from shared.errors import ConfigError
from shared.pseudonyms import KEY_FILE, for_device, load_or_create_key, pseudonym
from shared.semantic import EntityState

log = logging.getLogger(__name__)

MAX_BUFFER = 10_000
_ENTITY_ID = re.compile(r"[a-z_]+\.[a-z0-9_]+")


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
        self._rename: Callable[[str], str] | None = None  # entity id -> its pseudonym (finetune.pseudonyms)
        self._named: set[str] = set()  # entity ids in the device's pseudonym table
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
        self._rename, self._named = None, set()
        if cfg.finetune.pseudonyms:
            key = await asyncio.to_thread(load_or_create_key, cfg.device.data_dir / KEY_FILE)
            self._rename = functools.partial(pseudonym, key, cfg.device.twin_id)
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
        current = await self._named_state(await self._db.run(StateStore.current))
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

    async def _named_state(self, current: dict[str, EntityState]) -> dict[str, EntityState]:
        """The state as the gateway may see it: under the device's pseudonyms when it uses them (ids, and
        attribute values that are ids, as a group's members). Objects not yet in the tenant's table
        (``pseudonyms.json``, for ``llmtwin query``) are added to it first; if that fails (a pseudonym
        collision), nothing is sent rather than the real names."""
        if self._rename is None:
            return current
        if not self._named.issuperset(current):
            try:
                await asyncio.to_thread(for_device, self.cfg.device.data_dir, self.cfg.device.twin_id, current)
            except (OSError, ValueError, ConfigError) as exc:
                log.error("state not sent: the pseudonym table cannot be extended: %s", exc)
                return {}
            self._named |= set(current)
        rename = self._rename
        return {rename(e): _renamed(s, rename) for e, s in current.items()}

    def request_keyframe(self) -> None:
        if self.compressor is not None:
            self.compressor.request_keyframe()


def _renamed(state: EntityState, rename: Callable[[str], str]) -> EntityState:
    """``state`` with its id, and every attribute value that is an entity id, under its pseudonym."""
    attributes = tuple(
        (k, rename(v) if isinstance(v, str) and _ENTITY_ID.fullmatch(v) else v) for k, v in state.attributes
    )
    return replace(state, entity_id=rename(state.entity_id), attributes=attributes)
