"""``llmtwin bench bandwidth`` on a short slice of the default trace, with the tiny model for FL and the
gateway: every field is there, the ratios follow from the byte counts, and the byte model agrees with
the kernel's TCP counters and the relay's count on every system."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bandwidth
from shared import cli
from shared.bandwidth.baselines import load_baselines

TOP_FIELDS = (
    "raw_bytes", "fl_bytes", "llmtwin_bytes", "ratio_raw_over_llmtwin", "ratio_fl_over_llmtwin", "fidelity",
    "kernel_vs_model_error", "trace_hours", "tick_s", "K", "lambda_h", "fl_model", "fl_model_fallback",
    "fl_weights_bytes", "fl_rounds_measured", "fl_rounds_extrapolated", "adapter_artifact_bytes",
    "adapter_uploads", "bytes", "llmtwin_parts", "per_home", "series", "method",
)  # fmt: skip
HOME_FIELDS = (
    "raw_bytes", "fl_bytes", "llmtwin_bytes", "ratio_raw_over_llmtwin", "ratio_fl_over_llmtwin", "fidelity",
    "ticks", "raw_json_bytes", "replay_baseline_bytes", "prompts", "adapter_uploads", "adapter_artifact_bytes",
    "fl_rounds_measured", "fl_rounds_extrapolated", "raw", "fl_round", "fl", "llmtwin",
)  # fmt: skip


@pytest.fixture(scope="module")
def hour(tiny_model: Path, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("bench-bandwidth")
    out, curves = folder / "bandwidth.json", folder / "curves.json"
    argv = ["bench", "bandwidth", "--hours", "1", "--base", "tiny", "--cache-dir", str(model_cache)]
    assert cli.main([*argv, "--out", str(out), "--baselines-out", str(curves)]) == 0
    return json.loads(out.read_text()), curves


def test_every_field_is_reported(hour: tuple[dict[str, Any], Path]) -> None:
    report, _ = hour
    for key in TOP_FIELDS:
        assert report.get(key) is not None, key
    assert report["trace_hours"] == 1.0 and report["tick_s"] == 10.0 and report["K"] == 1
    assert report["fl_model"] == "tiny" and report["fl_model_fallback"] is False
    assert sorted(report["per_home"]) == ["home1", "home2", "home3"]
    for twin, home in report["per_home"].items():
        for key in HOME_FIELDS:
            assert home.get(key) is not None, f"{twin}.{key}"
        assert home["ticks"] == 360
        assert home["raw_json_bytes"] == home["replay_baseline_bytes"]  # the same JSON edge.fidelity counts
        assert home["adapter_uploads"] == 1 and home["adapter_artifact_bytes"] > 0
        assert home["fl_rounds_measured"] == 1 and home["fl_rounds_extrapolated"] == 0
    assert report["fl_rounds_measured"] == 3 and report["fl_rounds_extrapolated"] == 0
    assert 0.9 <= report["fidelity"] <= 1.0


def test_ratios_follow_from_the_byte_counts(hour: tuple[dict[str, Any], Path]) -> None:
    report, _ = hour
    raw, fl, twin = report["raw_bytes"], report["fl_bytes"], report["llmtwin_bytes"]
    assert 0 < twin < raw < fl
    assert report["ratio_raw_over_llmtwin"] == pytest.approx(raw / twin, rel=1e-4)
    assert report["ratio_fl_over_llmtwin"] == pytest.approx(fl / twin, rel=1e-4)
    homes = report["per_home"].values()
    assert sum(h["raw_bytes"] for h in homes) == raw
    assert sum(h["fl_bytes"] for h in homes) == fl
    assert sum(h["llmtwin_bytes"] for h in homes) == twin
    assert sum(report["llmtwin_parts"].values()) == twin
    for h in homes:
        assert h["ratio_raw_over_llmtwin"] == pytest.approx(h["raw_bytes"] / h["llmtwin_bytes"], rel=1e-4)
        assert h["fl_bytes"] == h["raw_bytes"] + h["fl_round"]["model"]  # one round in the first hour
        assert h["fl_round"]["model"] > report["fl_weights_bytes"]  # the weights, framed and acknowledged


def test_the_kernel_and_the_relay_agree_with_the_byte_model(hour: tuple[dict[str, Any], Path]) -> None:
    report, _ = hour
    assert report["kernel_vs_model_error"] <= 0.01
    for system in ("raw", "fl", "llmtwin"):
        wire = report["bytes"][system]
        assert wire["kernel_vs_model_error"] <= 0.01, system
        assert wire["relay"] == wire["kernel"], system  # the relay read what the kernel carried
    assert report["bytes"]["llmtwin"]["model"] == report["llmtwin_bytes"]


def test_the_curves_load_as_plot_baselines(hour: tuple[dict[str, Any], Path]) -> None:
    report, curves = hour
    loaded = load_baselines(curves)
    assert [c.name for c in loaded] == [c["name"] for c in report["series"]["baselines"]]
    finals = [c.points[-1][1] for c in loaded]
    assert finals == [report["raw_bytes"], report["fl_bytes"], report["llmtwin_bytes"]]
    assert all(c.points[-1][0] - c.points[0][0] == 3600.0 for c in loaded)


def test_an_unprepared_base_falls_back_to_the_tiny_model_and_says_so(
    tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "b.json"
    report = bandwidth.run(out, hours=0.05, base=str(tmp_path / "not-prepared"), cache_dir=model_cache)
    assert report["fl_model"] == "tiny" and report["fl_model_fallback"] is True and "fl_model_note" in report
    assert json.loads(out.read_text())["fl_bytes"] == report["fl_bytes"]


def test_schedule_charges_each_period_at_its_end() -> None:
    assert bandwidth.schedule(86400.0, 86400.0) == [86400.0]
    assert bandwidth.schedule(3600.0, 86400.0) == [3600.0]
    assert bandwidth.schedule(86400.0, 21600.0) == [21600.0, 43200.0, 64800.0, 86400.0]


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert cli.main(["bench", "bandwidth", "--hours", "0", "--out", str(tmp_path / "x.json")]) == 2
