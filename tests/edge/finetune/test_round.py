"""edge.finetune.round on the tiny model: publish, skip, gate, fail cleanly, never leave partial artifacts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import edge.finetune.round as round_mod
from edge.finetune import cli
from edge.finetune.eval_record import FILE_NAME as EVAL_SCORE
from edge.finetune.evaluate import gate
from edge.finetune.focus import FILE_NAME as EXAMPLE_LOSSES
from edge.finetune.focus import load_losses
from edge.finetune.round import RoundProgress, RoundRequest, RoundResult, run_round, versions
from edge.finetune.train import first_lora_layer
from edge.readings import StaticRecord
from gateway.engine import Engine, EngineOptions, GenerationRequest
from shared.adapter_codec import quantize
from shared.adapters import read_adapter
from shared.config.edge import FinetuneSection
from shared.modelspec import load_spec
from shared.scenario import generate
from shared.typed import FieldError

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def records() -> tuple[StaticRecord, ...]:
    home = generate(seed=7, homes=1, duration_s=60).homes[0]
    facts = list(home.static_facts())[:14]
    return tuple(StaticRecord(f.entity_id, f.attribute, f.value, f.sensitive) for f in facts)


def request_for(tiny_model: Path, out: Path, records: tuple[StaticRecord, ...], **fields: object) -> RoundRequest:
    base = RoundRequest.from_config(
        FinetuneSection(threads=1, max_steps=6, eval_threshold=0.0, keep_versions=2),
        twin_id="home1",
        version=1,
        model_dir=str(tiny_model),
        out_dir=str(out),
        records=records,
        batch_size=4,
        lr=1e-2,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".")) if out.exists() else []


@pytest.fixture(scope="module")
def published(
    tiny_model: Path, records: tuple[StaticRecord, ...], tmp_path_factory: pytest.TempPathFactory
) -> tuple[RoundResult, list[str], Path]:
    """One accepted round, started beside the staging directory a killed round left behind."""
    out = tmp_path_factory.mktemp("adapters")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".round-{dead.stdout.strip()}-deadbeef"
    stale.mkdir()
    (stale / "adapter.onnx_adapter").write_bytes(b"half written")
    phases: list[str] = []
    result = run_round(request_for(tiny_model, out, records), lambda p: phases.append(p.phase))
    return result, phases, out


def test_a_round_publishes_a_loadable_adapter(tiny_model: Path, published: tuple[RoundResult, list[str], Path]) -> None:
    result, phases, out = published
    assert result.status == "accepted", result.reason
    assert result.adapter_path == str(out / "v1" / "adapter.onnx_adapter")
    assert {"dataset", "train", "reference", "eval", "export"} <= set(phases)
    assert result.steps == 6 and result.accuracy is not None and result.parity_max_abs is not None
    assert result.facts > 0 and result.peak_rss_mb > 0 and result.adapter_bytes > 0
    # state readings rode along in training and were scored, the base model beside the adapter
    assert 0 < result.state_examples < result.train_examples / 10  # a share of the fact examples
    assert result.state_eval_examples == request_for(tiny_model, out, ()).state_checks
    assert result.state_accuracy is not None and result.state_accuracy_base is not None
    assert "state questions" in result.reason
    # the peak of every phase, in order; the round's is the largest (edge.finetune.memory)
    assert list(result.peak_rss_by_phase) == ["start", "dataset", "load", "train", "reference", "eval", "export"]
    assert result.peak_rss_mb == max(result.peak_rss_by_phase.values())
    spec = load_spec(tiny_model)
    adapter = read_adapter(Path(result.adapter_path), spec)
    man = adapter.manifest
    assert (man.twin_id, man.version, man.base_fingerprint, man.rank, man.dtype) == (
        "home1",
        1,
        spec.fingerprint,
        8,
        FinetuneSection().adapter_dtype,
    )
    first = first_lora_layer(spec.n_layers, request_for(tiny_model, out, ()).top_layers)
    assert man.layers == tuple(range(first, spec.n_layers))  # only the trained layers travel
    assert {"steps", "loss", "accuracy", "records", "seconds", "peak_rss_mb"} <= set(man.training)
    assert 0 < man.training["peak_rss_mb"] <= result.peak_rss_mb  # the peak up to the export
    curve = json.loads((out / "v1" / "loss_curve.json").read_text())
    assert len(curve["losses"]) == 6 and list(result.loss_curve) == [round(v, 5) for v in curve["losses"]]
    engine = Engine(tiny_model, EngineOptions(threads=1, slots=2))
    assert engine.bank is not None
    engine.bank.load(1, adapter)
    assert engine.generate([GenerationRequest("q", "home1 kitchen ceiling light: model?", slot=1, max_new_tokens=2)])
    assert leftovers(out) == []  # the killed round's staging directory is gone too


def test_the_full_precision_state_beside_the_artifact_is_what_it_was_rounded_from(
    tiny_model: Path, published: tuple[RoundResult, list[str], Path]
) -> None:
    result, _phases, out = published
    spec = load_spec(tiny_model)
    served = read_adapter(Path(result.adapter_path or ""), spec)
    state = read_adapter(out / "v1" / round_mod.TRAIN_STATE_NAME, spec)
    assert state.manifest.dtype == "float32" and state.manifest.version == served.manifest.version
    rounded = quantize(state.tensors, served.manifest.dtype)
    assert all(np.array_equal(rounded[name], value) for name, value in served.tensors.items())
    artifact = Path(result.adapter_path or "")
    assert round_mod._training_state(artifact, served, spec) is not served  # resumes from full precision
    other = out / "v9" / "adapter.onnx_adapter"
    assert round_mod._training_state(other, served, spec) is served  # no state there: the artifact itself


def test_same_seed_same_adapter_bytes(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...], published: tuple[RoundResult, list[str], Path]
) -> None:
    again = run_round(request_for(tiny_model, tmp_path, records))
    assert again.loss_curve == published[0].loss_curve
    assert Path(again.adapter_path or "").read_bytes() == Path(published[0].adapter_path or "").read_bytes()


def test_empty_or_tiny_data_is_skipped(tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...]) -> None:
    (tmp_path / "lower_cache.npz").write_bytes(b"rows of facts that are gone")
    empty = run_round(request_for(tiny_model, tmp_path, ()))
    assert (empty.status, empty.reason) == ("skipped", "no static records")
    assert not (tmp_path / "lower_cache.npz").exists()  # nothing derived from removed facts stays
    one = run_round(request_for(tiny_model, tmp_path, records[:1]))
    assert one.status == "skipped" and "askable static facts" in one.reason
    assert versions(tmp_path) == [] and leftovers(tmp_path) == []


def test_targets_the_serving_graph_lacks_fail_before_training(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...]
) -> None:
    result = run_round(request_for(tiny_model, tmp_path, records, targets=("q_proj", "k_proj")))
    assert result.status == "failed" and result.steps == 0
    assert "['k_proj'] are not in the serving graph" in result.reason
    hint = "llmtwin model prepare --base tiny --max-rank 16 --bank-dtype float32 --targets q_proj,k_proj"
    assert hint in result.reason
    assert versions(tmp_path) == [] and leftovers(tmp_path) == []


def test_an_interrupted_round_leaves_nothing(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...]
) -> None:
    class Killed(Exception):
        pass

    def kill_at_step_3(p: RoundProgress) -> None:
        if p.phase == "train" and p.step == 3:
            raise Killed

    with pytest.raises(Killed):
        run_round(request_for(tiny_model, tmp_path, records), kill_at_step_3)
    assert versions(tmp_path) == [] and leftovers(tmp_path) == []


def test_the_gate_refuses_a_worse_adapter_and_keeps_it_as_a_resume_point(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...]
) -> None:
    worse = run_round(request_for(tiny_model, tmp_path, records, current_score=1.0))
    assert worse.status == "rejected" and "worse than the adapter in service" in worse.reason
    assert worse.current_accuracy == 1.0 and versions(tmp_path) == [] and leftovers(tmp_path) == []
    checkpoint = tmp_path / "candidates" / "v1" / "adapter.onnx_adapter"
    assert worse.checkpoint_path == str(checkpoint) and worse.adapter_path is None
    read_adapter(checkpoint, load_spec(tiny_model))  # complete and verifiable, never published as a version
    losses = checkpoint.with_name(EXAMPLE_LOSSES)
    assert losses.stat().st_mode & 0o777 == 0o600 and len(load_losses(losses)) > 0  # beside it, owner-only
    resumed = run_round(request_for(tiny_model, tmp_path, records, version=2, resume_adapter=str(checkpoint)))
    assert resumed.status == "accepted" and resumed.warm_start  # training continued from the candidate
    assert resumed.losses_known == len(load_losses(losses))  # and from where its epochs had got to
    assert worse.losses_known == 0
    # the rows round 1's six steps computed come from its lower_cache.npz; the lower layers ran for the rest only
    assert worse.cache_reused == 0 and 0 < resumed.cache_reused < resumed.train_examples
    assert (tmp_path / "lower_cache.npz").stat().st_mode & 0o777 == 0o600
    for v in (3, 4):
        run_round(request_for(tiny_model, tmp_path, records, version=v, current_score=1.0))
    assert sorted(p.name for p in (tmp_path / "candidates").iterdir()) == ["v3", "v4"]  # the newest two kept


def scored(request: RoundRequest) -> tuple[RoundResult, int]:
    """The round's result and how many engine rows its eval ran on the held-out facts (the sample once per
    adapter scored; the state-reading questions, asked of the candidate and the base model, apart)."""
    totals: list[int] = []
    result = run_round(request, lambda p: totals.append(p.total) if p.phase == "eval" else None)
    return result, totals[-1] - 2 * result.state_eval_examples


def test_the_in_service_score_is_kept_from_its_round_and_old_versions_pruned(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...], published: tuple[RoundResult, list[str], Path]
) -> None:
    in_service = tmp_path / "v1"
    shutil.copytree(Path(published[0].adapter_path or "").parent, in_service)
    assert (in_service / EVAL_SCORE).stat().st_mode & 0o777 == 0o600  # hashes answers: owner-only
    current = str(in_service / "adapter.onnx_adapter")
    second, rows = scored(
        request_for(tiny_model, tmp_path, records, version=2, keep_versions=1, current_adapter=current)
    )
    assert second.status == "accepted", second.reason
    assert second.current_accuracy == published[0].accuracy  # v1's score on the same questions, from its round
    assert rows == second.eval_examples  # so only the candidate went through the engine
    assert second.warm_start  # and trained on from v1's weights
    assert [n for n, _ in versions(tmp_path)] == [1, 2]  # keep_versions = 1, but v1 is in service
    third = run_round(request_for(tiny_model, tmp_path, records, version=3, keep_versions=1))
    assert third.status == "accepted" and [n for n, _ in versions(tmp_path)] == [3]
    again = run_round(request_for(tiny_model, tmp_path, records, version=3))
    assert again.status == "failed" and "already exists" in again.reason


def test_the_adapter_in_service_is_rescored_when_its_score_is_not_for_these_questions(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...], published: tuple[RoundResult, list[str], Path]
) -> None:
    in_service = tmp_path / "in_service"
    shutil.copytree(Path(published[0].adapter_path or "").parent, in_service)
    current = str(in_service / "adapter.onnx_adapter")
    changed, rows = scored(request_for(tiny_model, tmp_path, records[:-1], version=2, current_adapter=current))
    assert rows == 2 * changed.eval_examples  # a fact changed: another sample, both adapters scored
    (in_service / EVAL_SCORE).write_text("{not json")  # damaged (or an adapter from before scores were kept)
    same, rows = scored(request_for(tiny_model, tmp_path, records, version=3, current_adapter=current))
    assert rows == 2 * same.eval_examples and same.current_accuracy == published[0].accuracy  # measured again


@pytest.mark.parametrize(
    ("accuracy", "threshold", "current", "ok"),
    [(0.95, 0.9, None, True), (0.85, 0.9, None, False), (0.95, 0.9, 0.97, False), (0.97, 0.9, 0.97, True)],
)
def test_gate_table(accuracy: float, threshold: float, current: float | None, ok: bool) -> None:
    assert gate(accuracy, threshold, current)[0] is ok


def test_memory_cap_gives_a_failed_result(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(round_mod, "train", no_memory)
    result = run_round(request_for(tiny_model, tmp_path, records))
    assert result.status == "failed" and result.reason.startswith("memory cap hit")
    monkeypatch.setattr(round_mod, "train", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    assert run_round(request_for(tiny_model, tmp_path, records)).status == "failed"
    assert versions(tmp_path) == [] and leftovers(tmp_path) == []


def test_request_json_round_trip(tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...]) -> None:
    request = request_for(tiny_model, tmp_path, records)
    assert RoundRequest.from_json(request.to_json()) == request
    bad = json.loads(request.to_json())
    bad["records"][0]["value"] = {"nested": 1}
    with pytest.raises(FieldError, match=r"records\[0\]"):
        RoundRequest.from_json(json.dumps(bad))


def test_cli_writes_the_result(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "round.json"
    request.write_text(request_for(tiny_model, tmp_path / "adapters", records).to_json())
    assert cli.main(["--request", str(request), "--progress", "jsonl"]) == 0
    result = RoundResult(**json.loads((tmp_path / "round.result.json").read_text()))
    assert result.status == "accepted"
    steps = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["step"] for s in steps if s["phase"] == "train"] == list(range(1, 7))


def test_cli_entry_point_refuses_a_bad_request(tmp_path: Path) -> None:
    request = tmp_path / "round.json"
    request.write_text("{}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "edge.finetune.round", "--request", str(request)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2 and "unusable round request" in done.stderr
    result = json.loads((tmp_path / "round.result.json").read_text())
    assert result["status"] == "failed" and "twin_id" in result["reason"]


def run_cli(request: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "edge.finetune.round", "--request", str(request), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def test_the_cli_scores_in_a_fresh_process_after_training(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...], published: tuple[RoundResult, list[str], Path]
) -> None:
    request = tmp_path / "round.json"
    request.write_text(request_for(tiny_model, tmp_path / "adapters", records).to_json())
    proc = run_cli(request, "--progress", "jsonl")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "scoring in a fresh process" in err  # the exec'd process (edge.finetune.handoff) said so
    result = RoundResult.from_json((tmp_path / "round.result.json").read_text())
    assert result.status == "accepted" and result.fresh_eval, result.reason
    assert not published[0].fresh_eval  # run_round in-process finishes in-process
    phases = [json.loads(line)["phase"] for line in out.splitlines()]
    assert phases.index("reference") < phases.index("eval") < phases.index("export")
    # both processes' phases, as in one process; the same adapter as the in-process round
    assert list(result.peak_rss_by_phase) == ["start", "dataset", "load", "train", "reference", "eval", "export"]
    assert result.peak_rss_mb == max(result.peak_rss_by_phase.values())
    assert result.steps == 6 and result.loss_curve == published[0].loss_curve and result.train_s > 0
    assert Path(result.adapter_path or "").read_bytes() == Path(published[0].adapter_path or "").read_bytes()
    version = sorted(p.name for p in (tmp_path / "adapters" / "v1").iterdir())
    assert version == sorted(p.name for p in (published[2] / "v1").iterdir())  # no hand-over files published
    assert leftovers(tmp_path / "adapters") == []


def test_sigterm_after_the_handoff_leaves_nothing(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...]
) -> None:
    request = tmp_path / "round.json"
    request.write_text(request_for(tiny_model, tmp_path / "adapters", records).to_json())
    proc = run_cli(request, "--progress", "jsonl")
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["phase"] == "eval":  # printed by the exec'd process, its SIGTERM handler set
            proc.terminate()
            break
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert versions(tmp_path / "adapters") == [] and leftovers(tmp_path / "adapters") == []


def test_a_handoff_that_returns_finishes_the_round_here(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...]
) -> None:
    seen: dict[str, int] = {}

    def not_exec(stage: Path) -> None:  # as if exec failed: the round goes on in this process
        seen.update({p.name: p.stat().st_mode & 0o777 for p in stage.iterdir()})

    result = run_round(request_for(tiny_model, tmp_path, records), exec_finish=not_exec)
    assert seen["handoff.json"] == seen["handoff.npz"] == 0o600  # the request's records are the device's facts
    assert round_mod.TRAIN_STATE_NAME in seen
    assert result.status == "accepted", result.reason
    assert not {"handoff.json", "handoff.npz"} & set(os.listdir(tmp_path / "v1"))


def test_a_rejected_candidate_goes_to_candidates_through_the_fresh_process(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...]
) -> None:
    request = tmp_path / "round.json"
    request.write_text(request_for(tiny_model, tmp_path / "adapters", records, eval_threshold=1.0).to_json())
    proc = run_cli(request, "--progress", "none")
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "scoring in a fresh process" in err, err
    result = RoundResult.from_json((tmp_path / "round.result.json").read_text())
    assert result.status == "rejected" and result.steps == 6 and "below the threshold" in result.reason
    checkpoint = Path(result.checkpoint_path or "")
    assert checkpoint == tmp_path / "adapters" / "candidates" / "v1" / "adapter.onnx_adapter" and checkpoint.exists()
    assert not {"handoff.json", "handoff.npz"} & set(os.listdir(checkpoint.parent))
    assert versions(tmp_path / "adapters") == [] and leftovers(tmp_path / "adapters") == []


def test_finish_refuses_a_directory_that_is_not_its_own(tmp_path: Path) -> None:
    other = tmp_path / "adapters" / ".round-1-beef"  # pid 1's, not this process's
    other.mkdir(parents=True)
    (other / "keep").write_text("not ours")
    assert cli.main(["--finish", str(other), "--result", str(tmp_path / "res.json")]) == 1
    result = RoundResult.from_json((tmp_path / "res.json").read_text())
    assert result.status == "failed" and "not a staging directory of this process" in result.reason
    assert (other / "keep").exists()  # left alone


def test_finish_without_a_handoff_fails_and_removes_its_staging_directory(tmp_path: Path) -> None:
    stage = tmp_path / "adapters" / f".round-{os.getpid()}-beef"
    stage.mkdir(parents=True)
    assert cli.main(["--finish", str(stage), "--result", str(tmp_path / "res.json")]) == 1
    result = RoundResult.from_json((tmp_path / "res.json").read_text())
    assert result.status == "failed" and "no usable hand-over" in result.reason
    assert not stage.exists()


def test_the_process_after_the_exec_never_imports_torch() -> None:
    code = "import sys, edge.finetune.cli, edge.finetune.finish, edge.finetune.round; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


_HELD_SIGTERM = """
import os, signal, sys
out = sys.argv[1]
stage = os.path.join(out, f".round-{os.getpid()}-beef")
os.mkdir(stage)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # as the CLI does before its exec
os.kill(os.getpid(), signal.SIGTERM)  # the daemon stopping, just before the exec
argv = ["-m", "edge.finetune.round", "--finish", stage, "--result", os.path.join(out, "res.json")]
os.execv(sys.executable, [sys.executable, *argv])
"""


def test_a_sigterm_held_across_the_exec_is_taken_once_the_staging_directory_is_owned(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _HELD_SIGTERM, str(tmp_path)], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 143, done.stderr  # not -15: it unwound, through the staging directory's cleanup
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging directory, no result


def test_when_the_exec_fails_the_cli_finishes_the_round_itself(
    tiny_model: Path, tmp_path: Path, records: tuple[StaticRecord, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_exec(path: str, argv: list[str]) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(cli.os, "execv", no_exec)
    request = tmp_path / "round.json"
    request.write_text(request_for(tiny_model, tmp_path / "adapters", records).to_json())
    assert cli.main(["--request", str(request), "--progress", "none"], exec_eval=True) == 0
    result = RoundResult.from_json((tmp_path / "round.result.json").read_text())
    assert result.status == "accepted" and not result.fresh_eval
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the mask is as it was
    assert not {"handoff.json", "handoff.npz"} & set(os.listdir(tmp_path / "adapters" / "v1"))
