"""Part 1 of ``llmtwin bench chaos``: hostile input against a running gateway, with counts.

The catalogue is :func:`hostile_cases`: single hostile messages (:mod:`benchmarks.chaos.catalogue`)
then hostile flows (:mod:`benchmarks.chaos.flows`). ``tests/chaos/test_hostile.py`` runs the same
cases one test each; :func:`run_part` runs them for the bench and counts.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.chaos.arena import Arena, Case, counts, run_cases
from benchmarks.chaos.catalogue import frame_cases
from benchmarks.chaos.flows import flow_cases
from benchmarks.chaos.report import ChaosCounts
from benchmarks.chaos.rig import GatewayRig
from shared.modelspec import default_cache_dir


def hostile_cases() -> list[Case]:
    return [*frame_cases(), *flow_cases()]


async def run_part(work: Path, cache_dir: Path | None, *, base: str = "tiny") -> ChaosCounts:
    cache = cache_dir or default_cache_dir(os.environ)
    async with GatewayRig(work / "hostile", cache, base=base) as gw, Arena(gw) as arena:
        results = await run_cases(arena, hostile_cases())
        return counts(arena, results)
