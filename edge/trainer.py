"""When the daemon fine-tunes, and what happens to the adapter: the λ scheduler of LoRA rounds.

A round starts (``Trainer.run``, one owned task of the daemon):

* first, once the device has static facts that held still for 15 minutes (devices report their
  attributes as they come up) and it has never trained;
* every ``finetune.lambda_h`` after the last round finished (daemon clock: scenario time under the
  simulator, so a replayed day shows its rounds);
* earlier, when the static facts differ from those the last trained round used by more than
  ``static_change_threshold`` (the fraction of facts added, removed or changed), once they hold still;
* on demand: ``POST /finetune`` on the admin server (``llmtwin edge train-now``).

A round that falls short of the eval gate is not served, but its adapter is kept as a candidate and
the next round resumes from it ("catching up": after ``catchup_pause_s`` rather than λ, while
held-out accuracy still improves, at most ``catchup_rounds`` in a row), so a device with many facts
gets there over several bounded rounds instead of starting cold each time. An accepted round that
gained at least a point on the round before (same facts) catches up the same way: past the gate, the
twin keeps improving over a few more rounds before the λ rhythm.

Never two at once: a request while one runs is refused (409). A failed round (no prepared model,
memory cap, killed) is retried after min(λ, 1 h). An adapter the gateway refused is kept locally
with the gateway's reason, and periodic rounds pause until the static facts change or someone asks:
the same facts would make the same adapter. The round itself runs in a child process
(:mod:`edge.finetune.child`); an accepted adapter goes into the outbox as an upload job and the uplink
sends it with the chunked, resumable protocol. The history (``finetune_rounds``) records which
version the gateway acknowledged, which one it refused and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.finetune.child import ChildRound, ChildSettings
from edge.finetune.history import RoundHistory, RoundRow
from edge.finetune.memory import peak_phase
from edge.finetune.request import EVAL_LIMIT, RoundProgress, RoundRequest, RoundResult
from edge.finetune.resume import Candidate, resume_point
from edge.outbox import Outbox
from edge.readings import StaticRecord
from edge.state_store import StateStore, change_fraction, digest
from shared.adapters import manifest_path
from shared.config.edge import EdgeConfig
from shared.db import Database
from shared.errors import ConfigError
from shared.modelspec import default_cache_dir, find_prepared
from shared.pseudonyms import for_device
from shared.templates import is_household

log = logging.getLogger(__name__)

CHECK_S = 60.0  # real seconds between looks at the static facts while nothing is due
SETTLE_S = 900.0  # daemon-clock seconds the static facts must hold still before they trigger a round
FAILED_RETRY_H = 1.0
CATCHUP_MIN_GAIN = 0.01


@dataclass(frozen=True, slots=True)
class Due:
    trigger: str | None  # why a round should start now, or None
    wait_s: float  # real seconds until the next look


class Trainer:
    def __init__(
        self,
        cfg: EdgeConfig,
        db: Database,
        *,
        now: Callable[[], float],
        speed: float = 1.0,
        env: Mapping[str, str] | None = None,
        served_version: Callable[[], int] = lambda: 0,
        on_upload: Callable[[], None] = lambda: None,
    ) -> None:
        self.cfg = cfg
        self._db = db
        self._now = now
        self._speed = speed
        self._env = dict(os.environ if env is None else env)
        self._served_version = served_version
        self._on_upload = on_upload
        self._wake = asyncio.Event()
        self._demand: str | None = None
        self.running: int | None = None  # the version being trained
        self.progress: RoundProgress | None = None
        self.rounds = 0

    @property
    def workdir(self) -> Path:
        return self.cfg.device.data_dir / "finetune"

    # ---- control -----------------------------------------------------------------------------------

    def request_round(self, why: str = "on demand") -> bool:
        """Ask for a round now; False when one is running or already asked for."""
        if self.running is not None or self._demand is not None:
            return False
        self._demand = why
        self._wake.set()
        return True

    def reconfigure(self, cfg: EdgeConfig) -> None:
        self.cfg = cfg
        self._wake.set()

    def status_text(self) -> str:
        if self.running is not None and self.progress is not None:
            p = self.progress
            loss = f" loss {p.loss:.3f}" if p.loss is not None else ""
            return f"fine-tune v{self.running} {p.phase} {p.step}/{p.total}{loss}"
        if self.running is not None:
            return f"fine-tune v{self.running} starting"
        return f"fine-tune idle (adapter v{self._served_version()} served)"

    async def snapshot(self) -> dict[str, Any]:
        recent = await self._db.run(RoundHistory.recent, 5)
        progress = None
        if self.running is not None and self.progress is not None:
            p = self.progress
            progress = {"phase": p.phase, "step": p.step, "total": p.total, "loss": p.loss, "elapsed_s": p.elapsed_s}
        return {
            "enabled": self.cfg.finetune.enabled,
            "running": self.running,
            "progress": progress,
            "served_version": self._served_version(),
            "rounds": [r.public() for r in recent],
        }

    # ---- the loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        stale = await self._db.run(RoundHistory.interrupt_running, self._now())
        if stale:
            log.warning("fine-tune: %d round(s) were cut short by the last shutdown", stale)
        while True:
            trigger = await self._next_trigger()
            await self.run_round(trigger)

    async def _next_trigger(self) -> str:
        while True:
            self._wake.clear()
            if self._demand is not None:
                trigger, self._demand = self._demand, None
                return trigger
            due = await self.due() if self.cfg.finetune.enabled else Due(None, CHECK_S)
            if due.trigger is not None:
                return due.trigger
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(due.wait_s):
                    await self._wake.wait()

    async def due(self) -> Due:
        """Whether a periodic or change-triggered round is due now, else how long to wait."""
        ft = self.cfg.finetune
        facts, _ = await self._named(await self._db.run(StateStore.static_facts))
        if not facts:
            return Due(None, CHECK_S)
        last = await self._db.run(RoundHistory.last, "accepted", "rejected", "skipped", "failed", "interrupted")
        changed_at: float | None = await self._db.run(StateStore.static_changed_at)
        settling = SETTLE_S - (self._now() - (changed_at or 0.0))
        if last is None:
            return Due("first round", 0.0) if settling <= 0 else Due(None, min(CHECK_S, settling / self._speed))
        trained = await self._db.run(RoundHistory.last, "accepted", "rejected")
        baseline = [] if trained is None else await self._db.run(RoundHistory.trained_on, trained.version)
        changed = change_fraction(baseline, facts)
        period_h = ft.lambda_h
        if last.status in ("failed", "interrupted"):
            period_h = min(ft.lambda_h, FAILED_RETRY_H)
        elif changed > ft.static_change_threshold and digest(facts) != last.static_digest:
            if settling > 0:  # a device is still reporting its attributes: wait until they hold still
                return Due(None, min(CHECK_S, settling / self._speed))
            return Due(f"static facts changed ({changed:.0%})", 0.0)
        refused = await self._db.run(RoundHistory.last, "accepted")
        if refused is not None and refused.upload == "rejected" and changed <= ft.static_change_threshold:
            return Due(None, CHECK_S)  # same facts, same adapter: wait for a change or a request
        catchup = await self._catching_up()
        due_at = (last.finished or last.started) + (ft.catchup_pause_s if catchup else period_h * 3600)
        left = due_at - self._now()
        if left <= 0:
            if catchup:
                return Due(catchup, 0.0)
            retry = last.status in ("failed", "interrupted")
            return Due("retry after a failed round" if retry else f"λ = {ft.lambda_h:g} h elapsed", 0.0)
        return Due(None, min(CHECK_S, left / self._speed))

    async def _catching_up(self) -> str | None:
        """A trigger while the twin is still learning fast: the next round runs after ``catchup_pause_s``
        instead of λ, up to ``catchup_rounds`` in a row, while held-out accuracy keeps improving by at
        least a point on the round before:

        * the last round fell short of the gate (its candidate is the resume point), or
        * it was accepted, on the same facts as the round before: a twin past the gate can still be far
          from its plateau (the paper bench's rounds 8-10 still added 0.01-0.03 held-out on its larger
          homes), and λ rounds would take days to get it there.

        A round refused against a better adapter in service is a plateau: back to the λ rhythm."""
        ft = self.cfg.finetune
        recent = await self._db.run(RoundHistory.recent, ft.catchup_rounds + 1)
        last = recent[0] if recent else None
        if last is None or last.accuracy is None or last.status not in ("accepted", "rejected"):
            return None
        if last.status == "rejected" and last.accuracy >= ft.eval_threshold:
            return None
        streak = 0
        for row in recent:
            if not row.trigger.startswith("catching up"):
                break
            streak += 1
        if streak >= ft.catchup_rounds:
            return None
        before = next((r for r in recent[1:] if r.accuracy is not None), None)
        was = None if before is None else before.accuracy
        gained = was is not None and last.accuracy >= was + CATCHUP_MIN_GAIN
        if last.status == "rejected":
            if was is not None and not gained:
                return None  # plateau: back to the λ rhythm
            return f"catching up (accuracy {last.accuracy:.2f} < gate {ft.eval_threshold:.2f})"
        if not gained or before is None or before.static_digest != last.static_digest:
            return None  # a cold round (nothing to compare), a plateau, or new facts
        return f"catching up (accuracy {last.accuracy:.2f}, up from {was:.2f})"

    # ---- one round ------------------------------------------------------------------------------------

    async def run_round(self, trigger: str) -> RoundResult:
        """Train, gate and (when accepted) queue the upload; the history records the outcome (and the facts
        as the round trained on them: under the pseudonyms, when the device uses them)."""
        facts, state_ids = await self._named(await self._db.run(StateStore.static_facts))
        version = max(await self._db.run(RoundHistory.max_version), self._served_version()) + 1
        await self._db.run(RoundHistory.begin, version, trigger, self._now(), digest(facts), facts)
        self.running, self.progress = version, None
        log.info("fine-tune v%d starts (%s): %d static facts", version, trigger, len(facts))
        try:
            result = await self._train(version, facts, state_ids)
            await self._record(version, result)
        except asyncio.CancelledError:
            finish = self._db.run(RoundHistory.finish, version, "interrupted", "daemon stopping", self._now())
            with contextlib.suppress(Exception):
                await asyncio.shield(finish)
            raise
        finally:
            self.running = None
            self.rounds += 1
        return result

    async def _train(self, version: int, facts: list[StaticRecord], state_ids: tuple[str, ...]) -> RoundResult:
        ft = self.cfg.finetune
        model_dir = find_prepared(ft.model_cache or default_cache_dir(self._env), ft.base)
        if model_dir is None:
            cache = ft.model_cache or default_cache_dir(self._env)
            why = f"no prepared base model {ft.base!r} in {cache}: run `llmtwin model prepare --base {ft.base}`"
            return RoundResult("failed", why, self.cfg.device.twin_id, version)
        current = await self._db.run(RoundHistory.last, "accepted")
        in_service = current if current is not None and current.upload in ("acked", "pending") else None
        same = in_service is not None and await self._same_objects(in_service.version, facts)
        n = min(EVAL_LIMIT, max(1, len(facts)))  # <= the eval's size
        resume = await self._resume_point(in_service, n, facts, yardstick=same)
        request = RoundRequest.from_config(
            ft,
            twin_id=self.cfg.device.twin_id,
            version=version,
            model_dir=str(model_dir),
            out_dir=str(self.workdir / "adapters"),
            records=tuple(facts),
            state_ids=state_ids,
            current_adapter=in_service.adapter_path if in_service else None,
            current_score=in_service.accuracy if in_service else None,
            resume_adapter=resume,
            warm_start=in_service is None or same or resume is not None,
        )
        rounds = self.workdir / "rounds"
        rounds.mkdir(parents=True, exist_ok=True)
        req_path = rounds / f"v{version}.request.json"
        _write_private(req_path, request.to_json())  # holds the sensitive facts: owner-only, removed after
        child = ChildRound(
            req_path,
            rounds / f"v{version}.result.json",
            rounds / f"v{version}.log",
            ChildSettings(ft.niceness, ft.memory_cap_mb),
            self._on_progress,
        )
        try:
            return await child.run()
        finally:
            req_path.unlink(missing_ok=True)

    async def _named(self, facts: list[StaticRecord]) -> tuple[list[StaticRecord], tuple[str, ...]]:
        """The facts as the round trains on them, and the ids its state readings draw on (none: the facts').
        Under the device's pseudonyms when it uses them: the facts under their fact names, the readings
        under the state names the daemon reports."""
        if not self.cfg.finetune.pseudonyms:
            return facts, ()
        twin_id, ids = self.cfg.device.twin_id, [f.entity_id for f in facts]
        try:
            table = await asyncio.to_thread(for_device, self.cfg.device.data_dir, twin_id, ids)
        except (OSError, ValueError, ConfigError) as exc:  # a pseudonym collision, a bad key: train nothing, not names
            log.error("fine-tuning paused: no pseudonyms for the static facts: %s", exc)
            return [], ()
        return table.records(facts), table.state_ids(ids)

    async def _same_objects(self, version: int, facts: list[StaticRecord]) -> bool:
        """Whether round ``version`` trained on some of the objects ``facts`` name. None in common (pseudonyms
        switched on or off, or a new key): its adapter knows names that are gone, so the round starts cold."""
        before = {f.entity_id for f in await self._db.run(RoundHistory.trained_on, version)}
        objects = {e for e in before if not is_household(e)}
        return not objects or bool(objects & {f.entity_id for f in facts})  # nothing recorded: as before

    async def _resume_point(
        self, in_service: RoundRow | None, n: int, facts: list[StaticRecord], *, yardstick: bool = True
    ) -> str | None:
        """A recent rejected candidate to continue from (``edge.finetune.resume``: one that beat the adapter
        in service, or a newer one within the eval's noise of it). None: start from the adapter in service.
        Only candidates trained on the objects of ``facts`` count. ``yardstick``: whether the adapter in service
        was trained on those objects too; one trained on others (pseudonyms switched) is no yardstick, so the
        best candidate is taken, as below the gate."""
        recent = await self._db.run(RoundHistory.recent, 10)
        candidates = [
            Candidate(r.version, r.accuracy, r.adapter_path)
            for r in recent
            if r.status == "rejected"
            and r.adapter_path
            and r.accuracy is not None
            and await self._same_objects(r.version, facts)
        ]
        version = in_service.version if in_service is not None else None
        accuracy = in_service.accuracy if in_service is not None and yardstick else None
        return resume_point(candidates, version, accuracy, n)  # (a resume file that is gone: the one in service)

    def _on_progress(self, progress: RoundProgress) -> None:
        if self.progress is None or progress.phase != self.progress.phase:
            log.info("fine-tune v%s: %s (%.0f s)", self.running, progress.phase, progress.elapsed_s)
        self.progress = progress

    async def _record(self, version: int, result: RoundResult) -> None:
        now = self._now()
        outbox_id = None
        if result.status == "accepted" and result.adapter_path:
            outbox_id = await self._queue_upload(version, Path(result.adapter_path))
        artifact = result.adapter_path or result.checkpoint_path  # served, or a resume point
        finish = (version, result.status, result.reason, now, result.accuracy, artifact, outbox_id)
        await self._db.run(RoundHistory.finish, *finish)
        level = logging.INFO if result.status in ("accepted", "skipped") else logging.WARNING
        log.log(level, "fine-tune v%d %s: %s%s", version, result.status, result.reason, _peak_note(result))
        if outbox_id is not None:
            self._on_upload()

    async def _queue_upload(self, version: int, artifact: Path) -> int:
        data = await asyncio.to_thread(artifact.read_bytes)
        job = {
            "artifact": str(artifact),
            "manifest": str(manifest_path(artifact)),
            "version": version,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        item = await self._db.run(Outbox.put_adapter, self.cfg.device.twin_id, _json_bytes(job), self._now())
        return item.id


def _json_bytes(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def _peak_note(result: RoundResult) -> str:
    """ " (peak RSS 1,310 MB, in eval)": the round's peak memory and the phase that set it, when measured."""
    if not result.peak_rss_mb:
        return ""
    phase = peak_phase(result.peak_rss_by_phase)
    return f" (peak RSS {result.peak_rss_mb:,.0f} MB{f', in {phase}' if phase else ''})"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
