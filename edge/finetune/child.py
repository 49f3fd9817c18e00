"""One fine-tuning round in a child process, followed from the daemon's event loop.

The daemon never trains in its own process: ``python -m edge.finetune.round`` runs at the profile's
niceness, its JSON-lines progress is read as it comes (the daemon's STATUS, /status and logs), its
stderr goes to a per-round log file, and its resident memory is sampled once a second. Above
``memory_cap_mb`` the child gets SIGTERM (it removes its staging directory and exits 143) and, if it
is still there 10 s later, SIGKILL: the round fails with "memory cap", the daemon is unaffected.
Cancelling :meth:`ChildRound.run` (the daemon stopping) terminates the child the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.finetune.request import RoundProgress, RoundResult

log = logging.getLogger(__name__)

GUARD_PERIOD_S = 1.0
TERM_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class ChildSettings:
    niceness: int
    memory_cap_mb: int
    python: str = sys.executable


class ChildRound:
    def __init__(
        self,
        request: Path,
        result: Path,
        log_file: Path,
        settings: ChildSettings,
        on_progress: Callable[[RoundProgress], None],
    ) -> None:
        self.request, self.result, self.log_file = request, result, log_file
        self.settings = settings
        self.on_progress = on_progress
        self.peak_rss_mb = 0.0
        self.phase = ""  # the last phase the child reported
        self._over_cap: str | None = None

    async def run(self) -> RoundResult:
        """Start the child, follow it to its end, and return its result (a failed one if it left none)."""
        self.result.unlink(missing_ok=True)
        cmd = [
            self.settings.python, "-m", "edge.finetune.round", "--request", str(self.request),
            "--result", str(self.result), "--progress", "jsonl", "--niceness", str(self.settings.niceness),
        ]  # fmt: skip
        with self.log_file.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=err
            )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read_progress(proc))
                guard = tg.create_task(self._guard(proc))
                await proc.wait()
                guard.cancel()
        except BaseException:  # cancelled, or on_progress raised: the child must not outlive its round
            await terminate(proc)
            raise
        return self._outcome(proc.returncode)

    async def _read_progress(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            try:
                progress = RoundProgress(**json.loads(line))
            except (ValueError, TypeError):
                log.debug("fine-tune child said: %r", line[:200])
                continue
            self.phase = progress.phase
            self.on_progress(progress)

    async def _guard(self, proc: asyncio.subprocess.Process) -> None:
        """Sample the child's RSS; past the cap, terminate it (its round fails, nothing else does)."""
        cap = self.settings.memory_cap_mb
        while proc.returncode is None:
            await asyncio.sleep(GUARD_PERIOD_S)
            rss = rss_mb(proc.pid)
            if rss is None:
                continue
            self.peak_rss_mb = max(self.peak_rss_mb, rss)
            if rss > cap:
                during = f" (during {self.phase})" if self.phase else ""
                self._over_cap = f"memory cap hit: resident {rss:.0f} MB > memory_cap_mb {cap}{during}"
                log.warning("fine-tune round: %s; terminating it", self._over_cap)
                await terminate(proc)
                return

    def _outcome(self, code: int | None) -> RoundResult:
        if self._over_cap is not None:
            return RoundResult("failed", self._over_cap, "", 0, peak_rss_mb=self.peak_rss_mb)
        if code in (0, 1, 2):
            with contextlib.suppress(OSError, ValueError, TypeError):
                return RoundResult.from_json(self.result.read_text(encoding="utf-8"))
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        return RoundResult("failed", f"the round's process {how} (see {self.log_file})", "", 0)


async def terminate(proc: asyncio.subprocess.Process, grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``grace_s``."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process (Linux /proc), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def set_niceness(target: int) -> None:
    """Raise this process's niceness to ``target`` (never lowers it)."""
    current = os.nice(0)
    if target > current:
        os.nice(target - current)
