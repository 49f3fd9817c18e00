"""``llmtwin bench round-memory`` on the tiny model: both ways of scoring a round, side by side."""

from __future__ import annotations

import json
from pathlib import Path

from shared import cli

PHASES = ["start", "dataset", "load", "train", "reference", "eval", "export"]


def test_round_memory_measures_both_ways_on_the_same_rounds(
    tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "round_memory.json"
    argv = ["bench", "round-memory", "--base", "tiny", "--cache-dir", str(model_cache), "--out", str(out)]
    assert cli.main([*argv, "--rounds", "1", "--threads", "1", "--max-time", "6"]) == 0
    report = json.loads(out.read_text())
    assert set(report["by_round"]) == {"same_process", "fresh_eval"}
    for mode, rounds in report["by_round"].items():
        (only,) = rounds
        assert only["status"] == "accepted" and only["steps"] > 0, mode
        assert only["fresh_eval"] is (mode == "fresh_eval")  # each chain really ran its way
        assert list(only["peak_rss_by_phase"]) == PHASES  # the fresh process's phases carry on the trainer's
        assert only["peak_at"] in PHASES and report["peak_rss_mb"][mode] == only["peak_rss_mb"]
    assert report["peak_ratio"] > 0 and report["eval_peak_ratio"] > 0
