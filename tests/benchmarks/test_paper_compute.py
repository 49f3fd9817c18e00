"""The paper bench's arithmetic: FedAvg is the weighted mean, extrapolated edge numbers say so, one
update's time adds up, and the comms composition charges every upload and round where it belongs.
One test runs the server path (registry commit + bank load vs FedAvg) on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.paper import comms, compute
from benchmarks.paper.fl_local import StepResult
from shared.adapters import AdapterManifest, write_adapter
from shared.modelspec import load_spec, lora_a_name, lora_b_name

# ------------------------------------------------------------------------------------------------
# FedAvg


def test_fedavg_is_the_weighted_mean_of_every_tensor() -> None:
    rng = np.random.default_rng(0)
    sets = [
        {"w": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=5).astype(np.float32)} for _ in range(3)
    ]
    weights = [410.0, 380.0, 10.0]
    out = compute.fedavg(sets, weights)
    assert list(out) == ["w", "b"]
    for name in ("w", "b"):
        expected = np.average(np.stack([s[name] for s in sets]), axis=0, weights=weights)
        assert out[name].dtype == np.float32
        np.testing.assert_allclose(out[name], expected, rtol=1e-6, atol=1e-6)


def test_fedavg_of_one_set_is_that_set_and_equal_weights_the_plain_mean() -> None:
    a = {"w": np.arange(6, dtype=np.float32)}
    b = {"w": np.arange(6, dtype=np.float32) * 3}
    np.testing.assert_array_equal(compute.fedavg([a], [7.0])["w"], a["w"])
    np.testing.assert_allclose(compute.fedavg([a, b], [1.0, 1.0])["w"], a["w"] * 2)


@pytest.mark.parametrize(
    ("sets", "weights"),
    [([], []), ([{"w": np.zeros(1)}], [1.0, 2.0]), ([{"w": np.zeros(1)}], [0.0]), ([{"w": np.zeros(1)}], [-1.0])],
)
def test_fedavg_rejects_bad_weights(sets: list[dict[str, np.ndarray]], weights: list[float]) -> None:
    with pytest.raises(ValueError):
        compute.fedavg(sets, weights)


# ------------------------------------------------------------------------------------------------
# edge extrapolation and time per update


def _steps(n: int, epoch_steps: int) -> StepResult:
    return StepResult(
        "full", 4.0, [2.0] * n, [100] * n, epoch_steps, 100 * epoch_steps, 8 * epoch_steps, 8, 1000, 900.0
    )


def test_extrapolation_is_labelled_and_scales_by_tokens() -> None:
    few = compute.extrapolate(_steps(3, 200))
    assert few.extrapolated is True and few.steps_measured == 3 and few.epoch_steps == 200
    assert few.tokens_per_s == pytest.approx(50.0)
    assert few.epoch_s == pytest.approx(4.0 + 200 * 100 / 50.0)  # load + epoch tokens at the measured rate
    assert few.to_json()["extrapolated"] is True
    whole = compute.extrapolate(_steps(200, 200))
    assert whole.extrapolated is False and whole.epoch_s == pytest.approx(few.epoch_s)


def test_extrapolation_needs_timed_steps() -> None:
    with pytest.raises(ValueError):
        compute.extrapolate(_steps(0, 200))


def test_update_time_adds_edge_transfer_and_server() -> None:
    t = compute.update_time(edge_s=100.0, nbytes=1_250_000, server_s=0.5, link_mbps=10.0)
    assert t.transfer_s == pytest.approx(1.0)  # 10 Mbit at 10 Mbit/s
    assert t.total_s == pytest.approx(101.5)
    assert t.to_json() == {
        "edge_s": 100.0,
        "transfer_s": 1.0,
        "server_s": 0.5,
        "total_s": 101.5,
        "bytes": 1_250_000,
        "link_mbps": 10.0,
    }
    with pytest.raises(ValueError):
        compute.update_time(1.0, 1, 1.0, 0.0)


# ------------------------------------------------------------------------------------------------
# comms composition


@pytest.mark.parametrize(
    ("events", "hours", "bins"),
    [
        ([], 2, [0, 0, 0]),
        ([(0.0, 7)], 2, [7, 0, 0]),  # the handshake
        ([(1.0, 1), (3600.0, 2), (3600.5, 4), (7200.0, 8)], 2, [0, 3, 12]),  # (k-1 h, k h]
        ([(9000.0, 5)], 2, [0, 0, 5]),  # past the end: the last hour
    ],
)
def test_hourly_bins(events: list[tuple[float, int]], hours: int, bins: list[int]) -> None:
    assert comms.hourly(events, hours) == bins


@pytest.mark.parametrize(
    ("horizon", "period", "times"),
    [(24, 24.0, [24.0]), (72, 24.0, [24.0, 48.0, 72.0]), (24, 72.0, []), (24, 6.0, [6.0, 12.0, 18.0, 24.0])],
)
def test_periodic_updates_at_the_end_of_each_period(horizon: int, period: float, times: list[float]) -> None:
    assert comms.periodic(horizon, period) == times


def test_measured_hours_repeat_over_the_horizon_with_one_handshake() -> None:
    assert comms.repeated([9, 1, 2], 5) == [9, 1, 2, 1, 2, 1]
    assert comms.cumulative([9, 1, 2, 1], [2.0, 2.5], 100) == [9, 10, 112, 213]


def _units() -> comms.Units:
    def home(name: str) -> comms.HomeUnits:
        return comms.HomeUnits(name, [50] + [1000] * 24, [20] + [10] * 24, 300, 250, 0.1, 0.99)

    return comms.Units(24, 10.0, [home("home1"), home("home2")], 5_000_000, 4_999_000, 0.5)


def test_compose_charges_state_uploads_and_rounds() -> None:
    out = comms.compose(_units(), horizon_h=72, lambdas_h=(6.0, 24.0, 72.0), ks=(1, 4), link_mbps=8.0)
    assert out["hours"] == list(range(73))
    state_24 = 2 * (20 + 24 * 10)
    raw_24 = 2 * (50 + 24 * 1000)
    assert out["bytes_llmtwin"] == state_24 + 2 * 300  # one upload per home in the first day at λ = 24 h
    assert out["bytes_fl"] == raw_24 + 2 * 5_000_000  # one round per home at K = 1
    llm, fl = out["series"]["llmtwin"], out["series"]["fl"]
    assert llm["24"][23] == 2 * (20 + 23 * 10)  # the upload lands at hour 24, not before
    assert llm["6"][24] == state_24 + 4 * 2 * 300
    assert llm["72"][24] == state_24 and llm["72"][72] == 2 * (20 + 72 * 10) + 2 * 300
    assert fl["4"][24] == raw_24 + 4 * 2 * 5_000_000
    assert out["series"]["raw"][72] == 2 * (50 + 72 * 1000)
    rows = {(r["system"], r["lambda_h"], r["K"]): r for r in out["table"]}
    assert rows[("LLM-Twin", 24.0, None)]["bytes_24h"] == out["bytes_llmtwin"]
    assert rows[("FL-DTN", None, 1)]["bytes_horizon"] == fl["1"][72]
    # link time per home: half the bytes at 8 Mbit/s = 1 byte per microsecond
    assert rows[("FL-DTN", None, 1)]["link_s_per_home_horizon"] == pytest.approx(fl["1"][72] / 2 / 1e6, abs=1e-3)
    assert comms.Units.from_json(_units().to_json()) == _units()


# ------------------------------------------------------------------------------------------------
# server compute on the tiny model


def _artifact(model_dir: Path, folder: Path, twin: str) -> Path:
    spec = load_spec(model_dir)
    rng = np.random.default_rng(1)
    tensors = {}
    for layer in range(spec.n_layers):
        for module in spec.target_modules:
            d_in, d_out = spec.target_shape(module)
            tensors[lora_a_name(layer, module)] = rng.normal(0, 0.1, (d_in, 8)).astype(np.float32)
            tensors[lora_b_name(layer, module)] = rng.normal(0, 0.01, (8, d_out)).astype(np.float32)
    path = folder / f"{twin}.onnx_adapter"
    write_adapter(path, tensors, AdapterManifest(twin, 1, spec.fingerprint, 8, 16.0, spec.target_modules))
    return path


def test_server_compute_runs_both_paths_for_every_n(tiny_model: Path, tmp_path: Path) -> None:
    art = _artifact(tiny_model, tmp_path, "home1")
    out = compute.server_compute(tiny_model, [art], range(1, 3), tmp_path / "server", [2.0, 1.0])
    assert out["n"] == [1, 2]
    assert set(out["server_s_llmtwin_per_n"]) == set(out["server_s_fl_per_n"]) == {"1", "2"}
    assert out["server_s_llmtwin"] == out["server_s_llmtwin_per_n"]["2"] > 0
    assert out["server_s_fl"] == out["server_s_fl_per_n"]["2"] > 0
    spec_params = sum(
        int(t.size) for t in compute.SafetensorsSet(sorted((tiny_model / "hf").glob("*.safetensors"))).values()
    )
    assert out["fl_parameters_averaged"] == spec_params
    assert out["fl_client_weights"] == [2.0, 1.0]


# ------------------------------------------------------------------------------------------------
# the FedAvg local step, in its child process, on the tiny model


@pytest.mark.slow
def test_full_weight_steps_train_every_parameter_on_the_rounds_batches(tiny_model: Path, tmp_path: Path) -> None:
    from benchmarks.finetune import home_records
    from benchmarks.paper.fl_local import StepRequest
    from edge.finetune.dataset import ReadingPlan, build_dataset
    from shared.modelspec import load_spec

    request = StepRequest("full", str(tiny_model), 1, warmup=1, steps=2, threads=1, state_share=0.05, state_checks=4)
    result = compute.run_steps(request, tmp_path)
    spec = load_spec(tiny_model)
    facts = build_dataset(home_records(7, 3, 1), tiny_model / spec.tokenizer_file, spec.eos_token_ids[0])
    rounds = build_dataset(
        home_records(7, 3, 1), tiny_model / spec.tokenizer_file, spec.eos_token_ids[0], ReadingPlan("home1", 0.05, 4, 7)
    )
    assert result.train_examples == len(rounds.train) > len(facts.train)  # the round's data: facts and readings
    weights = compute.SafetensorsSet(sorted((tiny_model / "hf").glob("*.safetensors")))
    assert result.parameters == sum(int(t.size) for t in weights.values())  # every stored tensor is trained
    assert len(result.step_s) == len(result.step_tokens) == 2 and all(s > 0 for s in result.step_s)
    assert result.epoch_steps > 2 and result.epoch_tokens > sum(result.step_tokens)
    assert result.batch_size == 8 and 0 < result.peak_rss_mb < 4000
    assert compute.extrapolate(result).extrapolated is True
