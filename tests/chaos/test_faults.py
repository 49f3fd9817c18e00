"""Part 3 of the chaos suite at test size: the same cases ``llmtwin bench chaos`` runs, with fewer
messages and a seconds-long link cut. Real gateway and edge processes, kill -9, a TCP relay, a tmpfs.
The tiny model is prepared into ``model_cache`` on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.chaos import faults, faults_disk, faults_edge
from benchmarks.chaos.cases import CaseResult, counts
from benchmarks.chaos.gatewayproc import tiny_cache

SMALL = faults.FaultOptions(
    devices=2, prompts=40, kills=2, queries=4, outage_s=2.0, outage_period_s=0.05, edge_prompts=8
)


@pytest.fixture
def cache(model_cache: Path) -> Path:
    return tiny_cache(model_cache)  # the tiny base, prepared on first use


def assert_clean(case: CaseResult) -> None:
    assert not case.skipped, case.skipped
    assert case.problems == [], case.problems
    assert case.lost == 0 and case.duplicated == 0, case
    assert case.sent > 0 and case.acked > 0, case


async def test_gateway_kill9_under_load_loses_and_repeats_nothing(tmp_path: Path, cache: Path) -> None:
    case = await faults.gateway_kill_under_load(tmp_path, cache, SMALL)
    assert_clean(case)
    assert case.acked == case.sent  # every prompt and every query answered in the end
    assert case.evidence["uplink_timeouts"] >= SMALL.kills  # the kills really interrupted traffic


async def test_gateway_kill9_mid_upload_resumes(tmp_path: Path, cache: Path) -> None:
    case = await faults.gateway_kill_mid_upload(tmp_path, cache, chunk=512)
    assert_clean(case)
    ev = case.evidence
    assert 0 < ev["acked_before_kill"] <= ev["resumed_from"] < ev["size"]  # resumed, not restarted


async def test_edge_kill9_keeps_the_outbox(tmp_path: Path, cache: Path) -> None:
    case = await faults_edge.edge_kill(tmp_path, cache, SMALL)
    assert_clean(case)
    assert case.evidence["outbox_integrity"] == "ok"


async def test_link_cut_store_and_forward_in_order(tmp_path: Path, cache: Path) -> None:
    case = await faults_edge.link_cut(tmp_path, cache, SMALL)
    assert_clean(case)
    assert case.evidence["relay_refused"] + case.evidence["uplink_timeouts"] > 0  # the cut was felt


async def test_disk_full_gives_storage_full_and_recovers(tmp_path: Path, cache: Path) -> None:
    case = await faults_disk.disk_full(tmp_path, cache)
    if case.skipped:
        pytest.skip(case.skipped)
    assert_clean(case)
    assert case.evidence["codes_while_full"]["state"] == "storage_full"


async def test_corrupt_adapter_is_refused_and_others_served(tmp_path: Path, cache: Path) -> None:
    case = await faults_disk.corrupt_adapter(tmp_path, cache)
    assert case.problems == [], case.evidence


def test_counts_add_cases_up() -> None:
    a = CaseResult("a", sent=3, acked=3, max_rss_mb=10.0)
    b = CaseResult("b", sent=2, acked=1, lost=1, max_rss_mb=20.0, problems=["x"])
    total = counts([a, b])
    assert (total.sent, total.acked, total.lost, total.max_rss_mb) == (5, 4, 1, 20.0)
    assert total.details["cases"]["a"]["passed"] and not total.details["cases"]["b"]["passed"]
