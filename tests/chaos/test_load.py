"""Part 4 of the chaos suite at test size: the bench's own load part with fewer edges and messages.

Asserts behaviour only (nothing lost or repeated, quiet tenants all served, the noisy one limited);
the latencies it reports are for the bench's JSON, not for assertions on a shared box."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.chaos import load
from benchmarks.chaos.gatewayproc import tiny_cache


@pytest.fixture
def cache(model_cache: Path) -> Path:
    return tiny_cache(model_cache)  # the tiny base, prepared on first use


async def test_n_edges_m_messages_and_a_noisy_neighbour(tmp_path: Path, cache: Path) -> None:
    opts = load.LoadOptions(edges=4, messages=25, quiet=2, quiet_queries=4, noisy_wave=20, limit_s=120)
    result = await load.run_part(tmp_path, cache, opts)
    cases = result.details["cases"]
    assert result.lost == 0 and result.duplicated == 0, cases
    assert result.sent == result.acked == 4 * 25 + 2 * 2 * 4, cases  # every prompt and every quiet query
    delivery, fairness = cases["delivery"], cases["noisy_neighbour"]
    assert delivery["passed"] and fairness["passed"], (delivery["problems"], fairness["problems"])
    assert fairness["evidence"]["noisy"]["rate_limited"] > 0
    assert fairness["evidence"]["quiet_with_noisy"]["p99_s"] is not None  # reported
    assert result.max_rss_mb > 0
