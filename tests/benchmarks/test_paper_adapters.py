"""``benchmarks.paper.adapters``: per-home adapters, resumable (a finished home is reused, a half-finished
one cleaned and retrained). The child round is faked at its boundary (``run_child``) with one that
writes a real artifact; the real child runs in test_paper_privacy.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.paper import adapters as mod
from benchmarks.paper.adapters import DONE, AdapterTrainingError, HomeAdapter, train_home_adapters
from benchmarks.paper.config import bench_pseudonyms
from edge.finetune.round import RoundRequest
from shared.adapters import AdapterManifest, write_adapter
from shared.modelspec import load_spec, lora_a_name, lora_b_name


class FakeChild:
    """Stands in for ``benchmarks.finetune.run_child``: records requests, writes a valid adapter."""

    def __init__(
        self, status: str = "accepted", rejected: frozenset[int] = frozenset(), scores: dict[int, float] | None = None
    ) -> None:
        self.requests: list[RoundRequest] = []
        self.status = status
        self.rejected = rejected  # round numbers whose candidate scores below the adapter in service
        self.scores = scores or {}  # round number -> held-out accuracy (default 0.5)

    def __call__(self, request: RoundRequest, work: Path, number: int) -> dict[str, Any]:
        self.requests.append(request)
        status = "rejected" if number in self.rejected else self.status
        spec = load_spec(Path(request.model_dir))
        where = Path(request.out_dir) / ("candidates" if status == "rejected" else "")
        artifact = where / f"v{request.version}" / "adapter.onnx_adapter"
        artifact.parent.mkdir(parents=True)
        d_out = {"q_proj": spec.n_heads * spec.head_dim, "v_proj": spec.n_kv_heads * spec.head_dim}
        tensors = {
            name: np.full(shape, 0.01, np.float32)
            for layer in range(spec.n_layers)
            for module, width in d_out.items()
            for name, shape in (
                (lora_a_name(layer, module), (spec.hidden, 8)),
                (lora_b_name(layer, module), (8, width)),
            )
        }
        manifest = AdapterManifest(request.twin_id, request.version, spec.fingerprint, 8, 16.0, ("q_proj", "v_proj"))
        write_adapter(artifact, tensors, manifest)
        result = {
            "status": status,
            "reason": "because",
            "adapter_path": str(artifact) if status == "accepted" else None,
            "checkpoint_path": str(artifact) if status == "rejected" else None,
            "accuracy": self.scores.get(number, 0.5),
            "eval_examples": 200,
            "steps": 3,
            "peak_rss_mb": 100.0 + number,
            "peak_rss_by_phase": {"train": 50.0 + number, "eval": 100.0 + number},
            "records": len(request.records),
            "facts": 7,
        }
        return {"result": result, "wall_s": 1.5}


@pytest.fixture
def child(monkeypatch: pytest.MonkeyPatch) -> FakeChild:
    fake = FakeChild()
    monkeypatch.setattr(mod, "run_child", fake)
    return fake


def test_homes_are_trained_in_order_with_chained_rounds(
    child: FakeChild, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    done = train_home_adapters(tmp_path, "tiny", model_cache, [2, 1], rounds=2, threads=1, max_time_s=30)
    assert [a.twin_id for a in done] == ["home2", "home1"]
    first = done[0]
    assert first == HomeAdapter(
        home=2,
        twin_id="home2",
        artifact=tmp_path / "home2" / "adapters" / "v2" / "adapter.onnx_adapter",
        round_s=3.0,
        rounds=2,
        steps=6,
        peak_rss_mb=102.0,
        records=first.records,
        facts=7,
        peak_at="round 2, eval",  # the largest round's largest phase
    )
    assert first.records > 100
    # the daemon's way: gate 0, the home's budget, round 2 warm-started from (and scored against) round 1
    r1, r2 = child.requests[:2]
    assert (r1.twin_id, r1.eval_threshold, r1.threads, r1.max_time_s, r1.current_adapter) == ("home2", 0.0, 1, 30, None)
    assert r2.current_adapter == str(tmp_path / "home2" / "adapters" / "v1" / "adapter.onnx_adapter")
    assert (
        json.loads((tmp_path / "home2" / DONE).read_text())["adapter"]["artifact"] == "adapters/v2/adapter.onnx_adapter"
    )


def test_a_finished_home_is_reused_and_a_half_finished_one_finished_from_its_rounds(
    child: FakeChild, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    first = train_home_adapters(tmp_path, "tiny", model_cache, [1, 2], threads=1)
    assert len(child.requests) == 2
    (tmp_path / "home2" / DONE).unlink()  # killed after its round, before its marker
    again = train_home_adapters(tmp_path, "tiny", model_cache, [1, 2], threads=1)
    assert again == first and len(child.requests) == 2  # nothing ran again


def test_more_rounds_continue_the_rounds_already_run(
    child: FakeChild, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    """``--rounds 3`` after a two-round run: rounds 1-2 are replayed from their records, round 3 warm-starts
    from round 2's adapter, and the home's totals count all three rounds."""
    train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=2, threads=1)
    (done,) = train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=3, threads=1)
    assert [r.version for r in child.requests] == [1, 2, 3]
    assert child.requests[2].current_adapter == str(tmp_path / "home1" / "adapters" / "v2" / "adapter.onnx_adapter")
    assert (done.rounds, done.round_s, done.steps, done.artifact.parent.name) == (3, 4.5, 9, "v3")


def test_a_round_killed_half_way_is_run_again_and_later_files_forgotten(
    child: FakeChild, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=3, threads=1)
    home = tmp_path / "home1"
    (home / DONE).unlink()
    (home / "round2.json").unlink()  # round 2 never finished: round 3's files belong to another history
    (done,) = train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=3, threads=1)
    assert [r.version for r in child.requests] == [1, 2, 3, 2, 3] and done.artifact.is_file()


def test_a_round_whose_record_the_parent_never_wrote_is_read_from_the_childs_files(
    child: FakeChild, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    """The parent killed after the child wrote its result: the child's request and result stand for the
    round, with the child's own seconds as its wall time."""
    train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=1, threads=1)
    home = tmp_path / "home1"
    record = json.loads((home / "round1.json").read_text())
    (home / "request1.json").write_text(json.dumps(record["request"]))
    (home / "request1.result.json").write_text(json.dumps({**record["result"], "seconds": 1.25}))
    (home / "round1.json").unlink()
    (done,) = train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=2, threads=1)
    assert len(child.requests) == 2 and done.round_s == 2.75


def test_a_folder_from_before_lineage_files_keeps_its_rounds_through_a_killed_run(
    monkeypatch: pytest.MonkeyPatch, child: FakeChild, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    """A finished folder with only ``done.json`` to say what it was made with: asking for more rounds
    writes ``lineage.json`` first, so a run killed in the new round still finds the old rounds after."""
    train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=1, threads=1)
    (tmp_path / "home1" / mod.LINEAGE).unlink()

    def killed(request: RoundRequest, work: Path, number: int) -> dict[str, Any]:
        raise FileNotFoundError(work / f"request{number}.result.json")

    monkeypatch.setattr(mod, "run_child", killed)
    with pytest.raises(AdapterTrainingError, match="home1 round 2: no result"):
        train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=2, threads=1)
    monkeypatch.setattr(mod, "run_child", child)
    (done,) = train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=2, threads=1)
    assert [r.version for r in child.requests] == [1, 2] and done.rounds == 2


def test_a_record_that_holds_less_than_a_round_needs_is_run_again(
    child: FakeChild, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=1, threads=1)
    path = tmp_path / "home1" / "round1.json"
    record = json.loads(path.read_text())
    del record["result"]["eval_examples"]  # written by a version that recorded less
    path.write_text(json.dumps(record))
    (done,) = train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=2, threads=1)
    assert [r.version for r in child.requests] == [1, 1, 2] and done.rounds == 2


def test_a_round_whose_inputs_are_gone_starts_the_home_over(
    child: FakeChild, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=2, threads=1)
    shutil.rmtree(tmp_path / "home1" / "adapters" / "v2")  # the adapter round 3 would warm-start from
    (done,) = train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=3, threads=1)
    assert [r.version for r in child.requests] == [1, 2, 1, 2, 3] and done.rounds == 3


@pytest.mark.parametrize(
    ("change", "damage"),
    [({"threads": 2}, None), ({"rounds": 2}, None), ({"recipe": {"lr": 0.01}}, None), ({}, "artifact")],
)
def test_other_settings_or_a_damaged_artifact_retrain(
    child: FakeChild, tiny_model: Path, model_cache: Path, tmp_path: Path, change: dict[str, Any], damage: str | None
) -> None:
    (first,) = train_home_adapters(tmp_path, "tiny", model_cache, [1], threads=1)
    if damage:
        first.artifact.write_bytes(b"not an adapter")
    train_home_adapters(tmp_path, "tiny", model_cache, [1], **{"threads": 1, **change})
    assert len(child.requests) == 2  # a new home, or round 2 after the one already run


def test_a_round_without_an_adapter_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(mod, "run_child", FakeChild(status="failed"))
    with pytest.raises(AdapterTrainingError, match="home1 round 1: failed: because"):
        train_home_adapters(tmp_path, "tiny", model_cache, [1])
    assert not (tmp_path / "home1" / DONE).exists()


def test_a_rejected_round_leaves_the_adapter_in_service(
    monkeypatch: pytest.MonkeyPatch, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    """As on the daemon: the candidate that scored below the adapter in service is not served, and every
    round is scored against the one in service. The next round continues from the candidate when it is
    within the eval's noise of that one (0.89 vs 0.90 on 200 questions), else from the one in service."""
    scores = {1: 0.90, 2: 0.89, 3: 0.93, 4: 0.80, 5: 0.95}
    child = FakeChild(rejected=frozenset({2, 4}), scores=scores)
    monkeypatch.setattr(mod, "run_child", child)
    (done,) = train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=5, threads=1)
    served = [r.current_adapter and Path(r.current_adapter).parent.name for r in child.requests]
    assert served == [None, "v1", "v1", "v3", "v3"]
    resumed = [r.resume_adapter and str(Path(r.resume_adapter).relative_to(tmp_path)) for r in child.requests]
    assert resumed == [None, None, "home1/adapters/candidates/v2/adapter.onnx_adapter", None, None]
    assert done.artifact.parent.name == "v5" and done.rejected == 2 and done.resumed == 1
    assert done.rounds == 5 and done.round_s == 7.5 and done.steps == 15  # every round's time and steps
    assert train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=5, threads=1) == [done]  # reused


def test_a_rejected_cold_round_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(mod, "run_child", FakeChild(rejected=frozenset({1})))
    with pytest.raises(AdapterTrainingError, match="home1 round 1: rejected: because"):
        train_home_adapters(tmp_path, "tiny", model_cache, [1], rounds=2)
    assert not (tmp_path / "home1" / DONE).exists()


def test_a_child_that_dies_without_a_result_fails_loudly_and_is_retrained_next_time(
    monkeypatch: pytest.MonkeyPatch, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    def killed(request: RoundRequest, work: Path, number: int) -> dict[str, Any]:
        (work / "adapters").mkdir()  # what a killed round may leave behind
        raise FileNotFoundError(work / f"request{number}.result.json")

    monkeypatch.setattr(mod, "run_child", killed)
    with pytest.raises(AdapterTrainingError, match="home1 round 1: no result from the round"):
        train_home_adapters(tmp_path, "tiny", model_cache, [1])
    child = FakeChild()
    monkeypatch.setattr(mod, "run_child", child)
    (done,) = train_home_adapters(tmp_path, "tiny", model_cache, [1])
    assert len(child.requests) == 1 and done.artifact.is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"homes": [4]}, "homes must lie in 1..3"),
        ({"homes": [0]}, "homes must lie in 1..3"),
        ({"homes": [1], "rounds": 0}, "rounds >= 1"),
        ({"homes": [1], "recipe": {"learning_rate": 1}}, "unknown RoundRequest fields \\['learning_rate'\\]"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(
    child: FakeChild, model_cache: Path, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        train_home_adapters(tmp_path, "tiny", model_cache, **kwargs)
    assert child.requests == [] and not list(tmp_path.iterdir())


def test_with_pseudonyms_a_home_trains_on_them_in_a_lineage_of_its_own(
    child: FakeChild, tiny_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    plain = train_home_adapters(tmp_path, "tiny", model_cache, [1], threads=1, max_time_s=30)
    named = train_home_adapters(tmp_path, "tiny", model_cache, [1], threads=1, max_time_s=30, pseudonyms=True)
    assert len(child.requests) == 2  # not reused: other settings
    real, fake = (r.records for r in child.requests)
    table = bench_pseudonyms(7, "home1", (r.entity_id for r in real))
    assert list(fake) == table.records(real) and named[0].records == len(fake) < plain[0].records
    assert not any("kitchen" in r.entity_id for r in fake)
    assert child.requests[0].state_ids == ()  # the records' own ids
    assert child.requests[1].state_ids == table.state_ids(r.entity_id for r in real)  # the state names
    lineage = json.loads((tmp_path / "home1" / "lineage.json").read_text())
    assert lineage["pseudonyms"] is True and lineage["fact_names"] is True  # not reused from before fact names


def test_a_round_recorded_before_a_request_field_existed_is_still_the_same_request() -> None:
    request = RoundRequest(twin_id="home1", version=1, model_dir="m", out_dir="o")
    recorded = json.loads(request.to_json())
    del recorded["state_ids"]  # written before the field: its default
    assert mod._same_request(recorded, request)
    assert not mod._same_request(
        recorded, RoundRequest(twin_id="home1", version=1, model_dir="m", out_dir="o", state_ids=("a.b",))
    )
    assert not mod._same_request({**recorded, "gone_field": 1}, request) and not mod._same_request(None, request)
    named = RoundRequest(
        twin_id="home1", version=1, model_dir="m", out_dir="o", state_ids=("light.home1_a", "sensor.x")
    )
    assert RoundRequest.from_json(named.to_json()) == named and named.reading_plan().entity_ids == named.state_ids
