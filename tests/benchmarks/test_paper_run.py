"""``llmtwin bench paper`` orchestration: phases resume from the state file, ``--restart`` starts clean,
other settings are refused, bad input names the command or flag to change (exit 2), and the figures
and the markdown are drawn from the JSON alone. Phases are stand-ins with the real result shapes; the
tiny model is only needed for the input checks."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from benchmarks.paper import comms, run
from benchmarks.paper.config import PaperConfig, PaperInputError
from shared import cli

Calls = Counter[str]


def _units() -> comms.Units:
    home = comms.HomeUnits("home1", [800] + [40_000] * 2, [800] + [300] * 2, 5_000, 4_800, 0.2, 0.995)
    return comms.Units(2, 10.0, [home], 13_000_000, 12_900_000, 0.4)


def _edge() -> dict[str, Any]:
    loop = {
        "load_s": 3.0,
        "step_s": 0.2,
        "tokens_per_s": 1000.0,
        "steps_measured": 3,
        "epoch_steps": 214,
        "epoch_s": 50.0,
        "extrapolated": True,
        "parameters_trained": 1000,
        "peak_rss_mb": 400.0,
        "epoch_tokens": 46_822,
        "train_examples": 1640,
        "batch_size": 8,
        "step_s_each": [0.2, 0.2, 0.2],
    }
    return {
        "home": "home1",
        "edge_s_llmtwin": 20.0,
        "edge_s_fl": 50.0,
        "edge_s_fl_measured_steps": 3,
        "extrapolated": True,
        "edge_s_fl_at_lora_steps": 12.0,
        "lora_round": {"peak_at": "round 2, eval"},
        "fl_local": loop | {"parameters_trained": 3_219_776, "peak_rss_mb": 480.0},
        "lora_loop": loop,
        "step_ratio_fl_over_lora": 1.5,
        "peak_rss_mb_llmtwin": 410.0,
        "peak_rss_mb_fl": 480.0,
    }


def _server() -> dict[str, Any]:
    return {
        "n": [1, 2],
        "server_s_llmtwin": 0.05,
        "server_s_fl": 0.08,
        "server_s_llmtwin_per_n": {"1": 0.03, "2": 0.05},
        "server_s_fl_per_n": {"1": 0.04, "2": 0.08},
        "fl_parameters_averaged": 3_219_776,
        "fl_client_weights": [1.0, 1.0],
        "adapter_artifacts": [],
    }


RESULTS: dict[str, Callable[[], dict[str, Any]]] = {
    "adapters": lambda: {
        "homes": [
            {
                "home": 1,
                "twin_id": "home1",
                "artifact": "/nowhere.onnx_adapter",
                "round_s": 20.0,
                "rounds": 1,
                "steps": 40,
                "peak_rss_mb": 410.0,
                "records": 531,
                "facts": 410,
            }
        ]
    },
    "privacy": lambda: {
        "normal_accuracy": {"10": 0.98, "20": 0.97},
        "reverse_success": {"10": 0.0},
        "likelihood_attack_top1": 0.11,
        "likelihood_attack_top1_base": 0.105,
        "chance": 0.1,
        "canary_exposure": {"door_code": 1.5},
        "enumeration_attack_top1": 0.96,
        "enumeration_attack": {"descriptions": 200, "forward_accuracy": 0.97, "chance": 0.1, "stderr": 0.014},
        "reverse": {"hits": [{"question": "Who has 2 as their household size?", "answer": "Ann", "object": "p"}]},
    },
    "compute": lambda: {"edge": _edge(), "server": _server()},
    "comms": lambda: {"units": _units().to_json()},
}


def _phases(calls: Calls, fail: str | None = None) -> dict[str, run.Phase]:
    def make(name: str) -> run.Phase:
        def phase(ctx: run.Context) -> dict[str, Any]:
            calls[name] += 1
            if name == fail:
                raise RuntimeError(f"{name} broke")
            if name != "adapters":
                assert ctx.state.phases["adapters"]["result"]["homes"][0]["twin_id"] == "home1"
            return RESULTS[name]()

        return phase

    return {name: make(name) for name in run.DATA_PHASES}


@pytest.fixture
def cfg(tiny_model: Path, model_cache: Path, tmp_path: Path) -> PaperConfig:
    return PaperConfig(
        out=tmp_path / "paper.json",
        base="tiny",
        cache_dir=model_cache,
        work=tmp_path / "work",
        homes=(1,),
        sizes_normal=(10, 20),
        sizes_reverse=(10,),
        server_n=2,
        comms_hours=2,
        figures=tmp_path / "figures",
        doc=tmp_path / "docs" / "results.md",
    )


def test_every_phase_runs_once_then_a_rerun_resumes(cfg: PaperConfig) -> None:
    calls: Calls = Counter()
    doc = run.run(cfg, phases=_phases(calls))
    assert calls == Counter(run.DATA_PHASES)
    state = json.loads((cfg.work / run.STATE_FILE).read_text())
    assert sorted(state["phases"]) == sorted(run.DATA_PHASES)
    again = run.run(cfg, phases=_phases(calls))
    assert calls == Counter(run.DATA_PHASES)  # nothing measured again
    assert again["bytes_llmtwin"] == doc["bytes_llmtwin"]
    (cfg.work / run.ADAPTERS_DIR / "home1").mkdir(parents=True)  # trained rounds
    (cfg.work / "compute").mkdir()
    run.run(cfg, restart=True, phases=_phases(calls))
    assert calls == Counter({name: 2 for name in run.DATA_PHASES})
    assert (cfg.work / run.ADAPTERS_DIR / "home1").is_dir()  # kept: rounds are reused only for their own request
    assert not (cfg.work / "compute").exists()


def test_redo_measures_the_named_phases_again_and_refuses_unknown_ones(cfg: PaperConfig) -> None:
    calls: Calls = Counter()
    run.run(cfg, phases=_phases(calls))
    run.run(cfg, redo=("compute", "comms"), phases=_phases(calls))
    assert calls == Counter({"adapters": 1, "privacy": 1, "compute": 2, "comms": 2})
    with pytest.raises(PaperInputError, match=r"--redo: unknown phases \['timing'\]"):
        run.run(cfg, redo=("timing",), phases=_phases(calls))


def test_a_failed_phase_keeps_the_ones_before_it(cfg: PaperConfig) -> None:
    calls: Calls = Counter()
    with pytest.raises(RuntimeError, match="compute broke"):
        run.run(cfg, phases=_phases(calls, fail="compute"))
    assert not cfg.out.exists()
    run.run(cfg, phases=_phases(calls))
    assert calls == Counter({"adapters": 1, "privacy": 1, "compute": 2, "comms": 1})


def test_other_settings_are_refused_but_composition_ones_are_not(cfg: PaperConfig) -> None:
    calls: Calls = Counter()
    run.run(cfg, phases=_phases(calls))
    with pytest.raises(PaperInputError, match=r"max_time_s.*--restart"):
        run.run(replace(cfg, max_time_s=60.0), phases=_phases(calls))
    doc = run.run(replace(cfg, link_mbps=100.0, horizon_h=48), phases=_phases(calls))
    assert calls == Counter(run.DATA_PHASES)
    assert doc["time_per_update"]["link_mbps"] == 100.0 and doc["comms"]["hours"][-1] == 48


def test_the_json_has_the_issue_keys_the_paper_beside_and_the_targets(cfg: PaperConfig) -> None:
    doc = run.run(cfg, phases=_phases(Counter()))
    on_disk = json.loads(cfg.out.read_text())
    for key in (
        "normal_accuracy",
        "reverse_success",
        "likelihood_attack_top1",
        "chance",
        "canary_exposure",
        "edge_s_llmtwin",
        "edge_s_fl",
        "server_s_llmtwin",
        "server_s_fl",
        "bytes_llmtwin",
        "bytes_fl",
    ):
        assert on_disk[key] is not None, key
    assert on_disk["edge_s_fl_measured_steps"] == 3 and on_disk["extrapolated"] is True
    assert on_disk["paper"]["edge_peak_rss_mb"] == 5878 and on_disk["paper"]["server_s_fl"] is None
    assert on_disk["targets"] == {
        "normal_min": 0.97,
        "normal_met": True,
        "reverse_met": True,
        "likelihood_max": 0.12,
        "likelihood_met": True,
    }
    assert on_disk["bytes_llmtwin"] == 800 + 24 * 300 + 5_000  # handshake, 24 h of the repeated hours, one upload
    upd = on_disk["time_per_update"]
    assert upd["n"] == 2 and upd["llmtwin"]["server_s"] == 0.05 and upd["fl"]["bytes"] == 13_000_000
    assert on_disk["command"].startswith("llmtwin bench paper --out ") and "--base tiny" in on_disk["command"]
    assert "--homes 1" in on_disk["reduced"] and on_disk["host"]["cpus"] >= 1
    assert doc["figures"] == on_disk["figures"]


def test_figures_and_markdown_come_from_the_json(cfg: PaperConfig, tmp_path: Path) -> None:
    doc = run.run(cfg, phases=_phases(Counter()))
    names = sorted(Path(p).name for p in doc["figures"])
    assert names == sorted(
        f"{n}.png" for n in ("accuracy", "edge_compute", "server_compute", "comms_bytes", "update_time")
    )
    for path in doc["figures"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "![accuracy](../figures/accuracy.png)" in text
    assert "| 20 | 0.97 | 0.91–0.97 (range) | — | — |" in text
    assert "Reduced run" in text and "extrapolated from 3 timed steps" in text
    assert "only answers): top-1 0.96." in text and "top-1 **0.96** (± 0.014)" in text  # enumeration attacker
    assert "answered 0.97 of those objects' forward questions right" in text
    assert "| peak RSS (MB) | 410 (round 2, eval) | 480 |" in text  # where the round peaked
    assert "(the hits: “Who has 2 as their household size?” → “Ann”)" in text  # a reverse hit is quoted
    # --figures-only re-renders from the JSON alone, into other places
    again = tmp_path / "again"
    argv = [
        "bench",
        "paper",
        "--figures-only",
        str(cfg.out),
        "--figures",
        str(again / "f"),
        "--doc",
        str(again / "r.md"),
    ]
    assert cli.main(argv) == 0
    assert sorted(p.name for p in (again / "f").iterdir()) == names
    rerendered = (again / "r.md").read_text()
    assert "![accuracy](f/accuracy.png)" in rerendered and "| 20 | 0.97 | 0.91–0.97 (range) | — | — |" in rerendered


def test_a_partial_json_draws_what_it_has(tmp_path: Path) -> None:
    from benchmarks.paper import figures

    drawn = figures.render_all({"normal_accuracy": {"100": 0.5}, "reverse_success": {"100": 0.0}}, tmp_path)
    assert [p.name for p in drawn] == ["accuracy.png"]


# ------------------------------------------------------------------------------------------------
# bad input through the CLI: exit 2 and a message naming what to do


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["bench", "paper", *argv])
    return code, capsys.readouterr().err


def test_a_missing_model_names_the_prepare_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli(
        ["--out", str(tmp_path / "p.json"), "--cache-dir", str(tmp_path / "empty"), "--work", str(tmp_path / "w")],
        capsys,
    )
    assert code == 2
    assert "llmtwin model prepare --base smollm2-135m" in err and "not prepared" in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--normal-sizes", "100,5000"], "--normal-sizes"),
        (["--homes", "1", "--normal-sizes", "10", "--reverse-sizes", "1000"], "--reverse-sizes"),
        (["--homes", "1,4"], "--homes"),
        (["--homes", "one"], "--homes"),
        (["--recipe", '{"lr": 1, "nope": 2}'], "--recipe"),
    ],
)
def test_a_too_small_scenario_or_bad_flag_names_the_flag(
    flags: list[str],
    named: str,
    tiny_model: Path,
    model_cache: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["--out", str(tmp_path / "p.json"), "--base", "tiny", "--cache-dir", str(model_cache)]
    code, err = _cli([*base, "--work", str(tmp_path / "w"), *flags], capsys)
    assert code == 2
    assert named in err, err


def test_out_is_required_without_figures_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli([], capsys)
    assert code == 2 and "--out" in err


def test_figures_only_refuses_a_json_of_another_bench(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "bandwidth.json"
    other.write_text(json.dumps({"benchmark": "bandwidth"}))
    code, err = _cli(["--figures-only", str(other), "--figures", str(tmp_path / "f")], capsys)
    assert code == 2 and "not written by `llmtwin bench paper`" in err


def test_the_write_up_gives_the_calibrated_attacker_where_the_run_measured_it() -> None:
    from benchmarks.paper import document

    assert document._calibrated({}) == ""  # runs from before it
    assert "minus the base model's" in document._calibrated({"likelihood_attack_top1_calibrated": 0.12})
    assert "top-1 is 0.12." in document._calibrated({"likelihood_attack_top1_calibrated": 0.12})


def test_the_write_up_says_when_the_base_model_alone_is_over_the_likelihood_target() -> None:
    from benchmarks.paper import document

    doc = {"chance": 0.119, "targets": {"likelihood_max": 0.139}}
    privacy = {"likelihood_attack_top1_base": 0.145, "likelihood_attack": {"descriptions": 200}}
    text = document._base_floor(doc, privacy)
    assert "at the target's chance + 0.02 = 0.139: over it by 0.2 standard errors (0.025 over 200" in text
    under = document._base_floor(doc, {**privacy, "likelihood_attack_top1_base": 0.13})
    assert "under it by 0.4 standard errors" in under  # within noise of it either way
    assert document._base_floor(doc, {**privacy, "likelihood_attack_top1_base": 0.08}) == ""  # well under


def test_pseudonyms_are_a_setting_of_their_own_and_shown_in_the_command(tmp_path: Path) -> None:
    plain, named = PaperConfig(tmp_path / "p.json"), PaperConfig(tmp_path / "p.json", pseudonyms=True)
    assert "pseudonyms" not in plain.key()  # a state from before the option still matches
    assert named.key()["pseudonyms"] is True and named.key() != plain.key()
    assert named.command().endswith(" --pseudonyms") and named.reduced() == []  # a variant at full scale
    assert "--pseudonyms" not in plain.command()


def test_the_write_up_says_whether_the_homes_trained_on_pseudonyms() -> None:
    from benchmarks.paper import document

    assert "as in this run" in document._pseudonyms({}) and "--pseudonyms" in document._pseudonyms({})
    privacy = {"pseudonyms": True, "enumeration_attack_top1_with_key": 0.98, "linking_attack_top1": 0.2}
    named = document._pseudonyms({**privacy, "linking_attack": {"bound": 0.23}})
    assert "trained on keyed pseudonyms" in named and "the enumeration attacker reaches 0.98" in named
    assert "expected top-1 **0.2**, where knowing the domain of every value would give 0.23" in named
    assert "expected top-1 **0.23**, which is that bound" in document._pseudonyms(
        {**privacy, "linking_attack_top1": 0.23, "linking_attack": {"bound": 0.23}}
    )
    by_attribute = {"auto_lock_s": {"n": 7, "top1": 0.71}, "wattage_w": {"n": 29, "top1": 0.03}}
    attack = {"likelihood_attack_top1": 0.28, "likelihood_attack": {"by_attribute": by_attribute}}
    kept = document._pseudonyms({**privacy, **attack})
    assert "`auto_lock_s` 0.71 over 7" in kept and "`wattage_w` 0.03 over 29" in kept
    # a run on fact names: the real-name attacker against the base model, the linking attacker by type
    facts = {**privacy, "fact_names": True, "linking_attack_top1": 0.2, "linking_attack": {"bound": 0.23}}
    scored = {"likelihood_attack_top1": 0.15, "likelihood_attack_top1_base": 0.145}
    scored |= {"likelihood_attack": {"descriptions": 200}}
    text = document._pseudonyms({**facts, **scored})
    assert '"home1 kisufa device"' in text and "the enumeration attacker reaches 0.98" in text
    assert "top-1 is 0.15 against 0.145 with the base model alone, 0.1 standard errors over it" in text
    assert "which give the type back" in text and "top-1 **0.2**, where knowing the domain" in text
    assert "auto_lock_s" not in text
    below = document._pseudonyms({**facts, **scored, "likelihood_attack_top1": 0.085, "linking_attack_top1": 0.23})
    assert "0.085 against 0.145 with the base model alone, 1.9 standard errors under it" in below
    assert "top-1 **0.23**, which is that bound" in below
