"""``llmtwin bench finetune`` on the tiny model: the child-process round measured end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import finetune
from shared import cli
from shared.templates import Kind


def test_bench_finetune_reports_every_required_field_over_chained_rounds(
    tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "finetune.json"
    recipe = '{"max_steps": 3, "eval_limit": 8, "batch_size": 4}'
    argv = ["bench", "finetune", "--base", "tiny", "--cache-dir", str(model_cache), "--out", str(out)]
    assert cli.main([*argv, "--rounds", "2", "--threads", "1", "--max-time", "60", "--recipe", recipe]) == 0
    report = json.loads(out.read_text())
    for key in ("model", "records", "steps", "round_s", "peak_rss_mb", "tokens_per_s", "heldout_accuracy"):
        assert report[key] is not None, key
    assert report["adapter_bytes"] > 0 and report["full_model_bytes"] > report["adapter_bytes"]
    assert report["model"] == "tiny" and report["records"] > 0 and report["steps"] == 3
    assert [r["warm_start"] for r in report["rounds"]] == [False, True]  # round 2 resumed from round 1
    assert len(report["accuracy_by_round"]) == 2 and report["cumulative_round_s"][1] > report["round_s"]
    wordings = report["final_wordings"]  # the adapter in service at the end, on every wording
    assert wordings["adapter"] in {"v1", "v2"}
    for split in ("heldout", "audit"):
        assert wordings[split]["n"] > report["eval_examples"] and 0 <= wordings[split]["accuracy"] <= 1
        assert all(t.startswith(tuple(k.value for k in Kind)) for t in wordings[split]["by_template"])
    assert not set(wordings["heldout"]["by_template"]) & set(wordings["audit"]["by_template"])


def test_an_unknown_recipe_field_is_refused_by_name(model_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown RoundRequest fields \\['learning_rate'\\]"):
        finetune.run("tiny", tmp_path / "x.json", cache_dir=model_cache, learning_rate=0.1)
