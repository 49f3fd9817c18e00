"""``llmtwin bench chaos --out FILE.json``: every chaos part against real processes, summed into one report.

Each part is a module with ``async def run_part(work: Path, cache_dir: Path | None) -> ChaosCounts``,
listed in :data:`PARTS` (adding a part is one line). Parts run one after the other, each in its own
folder under a temporary work directory, on the tiny model (prepared into the cache when missing).
The JSON has the summed headline counts (``sent``, ``acked``, ``lost``, ``duplicated``,
``bad_inputs_tried``, ``bad_inputs_survived``, ``leak_hits``, ``max_rss_mb``), whether the targets were
met, and each part's details (per-case outcomes, RSS samples, ...) under its name.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.chaos.report import ChaosCounts
from shared.modelspec import default_cache_dir, find_prepared

RunPart = Callable[[Path, Path | None], Awaitable[ChaosCounts]]

# part name → module exposing run_part(work, cache_dir)
PARTS: dict[str, str] = {
    "hostile": "benchmarks.chaos.hostile",
    "auth": "benchmarks.chaos.auth",
    "faults": "benchmarks.chaos.faults",
    "load": "benchmarks.chaos.load",
    "leaks": "benchmarks.chaos.leaks",
}
BASE = "tiny"


def check_parts(names: Sequence[str]) -> list[str]:
    """The unknown names among ``names`` (for the command line)."""
    return [n for n in names if n not in PARTS]


def run(out: Path, *, parts: Sequence[str] = tuple(PARTS), cache_dir: Path | None = None) -> dict[str, Any]:
    cache = cache_dir or default_cache_dir(os.environ)
    if find_prepared(cache, BASE) is None:
        from edge.model.prepare import prepare_model  # torch: only when the tiny model is missing

        prepare_model(BASE, cache)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llmtwin-chaos-") as tmp:
        total = asyncio.run(_run_parts(Path(tmp), cache, parts))
    result = report(total, time.monotonic() - started)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


async def _run_parts(work: Path, cache: Path, parts: Sequence[str]) -> ChaosCounts:
    total = ChaosCounts()
    for name in parts:
        run_part: RunPart = importlib.import_module(PARTS[name]).run_part
        began = time.monotonic()
        counts = await run_part(work / name, cache)
        counts.details["seconds"] = round(time.monotonic() - began, 1)
        total.merge(name, counts)
    return total


def report(total: ChaosCounts, seconds: float) -> dict[str, Any]:
    head = total.headline()
    targets = {
        "lost_is_0": total.lost == 0,
        "duplicated_is_0": total.duplicated == 0,
        "all_bad_inputs_survived": total.bad_inputs_survived == total.bad_inputs_tried,
        "leak_hits_is_0": total.leak_hits == 0,
    }
    return {
        **head,
        "targets_met": all(targets.values()),
        "targets": targets,
        "parts": {name: detail["counts"] for name, detail in total.details.items()},
        "details": total.details,
        "model": BASE,
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }
