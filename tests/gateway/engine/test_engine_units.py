"""Pure parts of the engine, table-driven: KV/batch bookkeeping, sampling, stop-string handling."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.engine.bank import AdapterBank
from gateway.engine.generator import _first_stop, _holdback
from gateway.engine.kv import concat_rows, leading_padding, left_pad_prompts, left_pad_time, take_rows
from gateway.engine.sampling import SamplingParams, choose_token, new_rng
from shared.adapters import AdapterManifest, LoadedAdapter
from shared.errors import AdapterShapeError, ModelError
from shared.modelspec import ModelSpec, Validation


def _past(batch: int, time: int, fill: float) -> dict[str, np.ndarray]:
    # [batch, kv_heads=2, time, head_dim=3], each row's values = fill + row so rows are traceable
    rows = fill + np.arange(batch, dtype=np.float32)[:, None, None, None]
    return {"k": np.broadcast_to(rows, (batch, 2, time, 3)).copy()}


@pytest.mark.parametrize(
    ("prompts", "ids", "mask", "positions"),
    [
        ([[7]], [[7]], [[1]], [[0]]),
        ([[1, 2, 3], [4]], [[1, 2, 3], [0, 0, 4]], [[1, 1, 1], [0, 0, 1]], [[0, 1, 2], [0, 0, 0]]),
        ([[5, 6], [8, 9]], [[5, 6], [8, 9]], [[1, 1], [1, 1]], [[0, 1], [0, 1]]),
    ],
)
def test_left_pad_prompts(
    prompts: list[list[int]], ids: list[list[int]], mask: list[list[int]], positions: list[list[int]]
) -> None:
    got_ids, got_mask, got_pos = left_pad_prompts(prompts)
    assert got_ids.tolist() == ids
    assert got_mask.tolist() == mask
    assert got_pos.tolist() == positions
    assert got_ids.dtype == np.int64


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (np.zeros((0, 0), np.int64), 0),
        ([[1, 1]], 0),
        ([[0, 1], [0, 1]], 1),
        ([[0, 0, 1], [0, 1, 1]], 1),
        ([[0, 0], [0, 0]], 2),
    ],
)
def test_leading_padding(mask: object, expected: int) -> None:
    assert leading_padding(np.asarray(mask, np.int64)) == expected


def test_left_pad_time_prepends_masked_zeros() -> None:
    past, mask = left_pad_time(_past(1, 2, 5.0), np.ones((1, 2), np.int64), 4)
    assert past["k"].shape == (1, 2, 4, 3)
    assert (past["k"][:, :, :2] == 0).all() and (past["k"][:, :, 2:] == 5).all()
    assert mask.tolist() == [[0, 0, 1, 1]]
    with pytest.raises(ValueError):
        left_pad_time(_past(1, 2, 5.0), np.ones((1, 2), np.int64), 1)


def test_concat_rows_pads_the_narrower_batch() -> None:
    running = (_past(2, 5, 10.0), np.ones((2, 5), np.int64))
    joining = (_past(1, 3, 20.0), np.array([[0, 1, 1]], np.int64))
    past, mask = concat_rows(running, joining)
    assert past["k"].shape == (3, 2, 5, 3)
    assert mask.tolist() == [[1] * 5, [1] * 5, [0, 0, 0, 1, 1]]
    assert (past["k"][2, :, 2:] == 20).all() and (past["k"][2, :, :2] == 0).all()
    assert (past["k"][1] == 11).all()


def test_take_rows_trims_columns_that_became_padding() -> None:
    past = _past(3, 4, 0.0)
    mask = np.array([[1, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1]], np.int64)
    kept, kept_mask = take_rows(past, mask, [2, 1])
    assert kept_mask.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert kept["k"].shape == (2, 2, 3, 3)
    assert (kept["k"][0] == 2).all() and (kept["k"][1] == 1).all()
    assert kept["k"].flags["C_CONTIGUOUS"]


def test_greedy_is_argmax_and_needs_no_rng() -> None:
    logits = np.array([0.1, 3.0, -1.0, 2.9], np.float32)
    params = SamplingParams()
    assert new_rng(params) is None
    assert choose_token(logits, params, None) == 1


def test_seeded_sampling_is_reproducible_and_follows_temperature() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.2], np.float64)).astype(np.float32)
    params = SamplingParams(temperature=1.0, seed=42)
    a, b = new_rng(params), new_rng(params)
    draws_a = [choose_token(logits, params, a) for _ in range(2000)]
    draws_b = [choose_token(logits, params, b) for _ in range(2000)]
    assert draws_a == draws_b
    freq = np.bincount(draws_a, minlength=3) / len(draws_a)
    assert np.allclose(freq, [0.5, 0.3, 0.2], atol=0.04)


@pytest.mark.parametrize(("top_p", "allowed"), [(0.01, {0}), (0.5, {0}), (0.7, {0, 1}), (0.95, {0, 1, 2})])
def test_top_p_keeps_the_smallest_nucleus(top_p: float, allowed: set[int]) -> None:
    logits = np.log(np.array([0.55, 0.25, 0.15, 0.05], np.float64)).astype(np.float32)
    params = SamplingParams(temperature=1.0, top_p=top_p, seed=3)
    rng = new_rng(params)
    seen = {choose_token(logits, params, rng) for _ in range(400)}
    assert seen == allowed


def test_top_p_over_a_large_flat_vocabulary_falls_back_to_a_full_sort() -> None:
    logits = np.zeros(5000, np.float32)  # 1024 candidates hold ~20% of the mass
    params = SamplingParams(temperature=1.0, top_p=0.9, seed=1)
    rng = new_rng(params)
    picks = {choose_token(logits, params, rng) for _ in range(300)}
    assert max(picks) >= 1024  # drawn from beyond the first candidate window
    assert len(picks) > 200


@pytest.mark.parametrize(
    "bad",
    [
        SamplingParams(temperature=-1.0),
        SamplingParams(top_p=0.0),
        SamplingParams(top_p=1.5),
        SamplingParams(temperature=float("nan")),
    ],
)
def test_invalid_sampling_params(bad: SamplingParams) -> None:
    with pytest.raises(ModelError):
        bad.check()


@pytest.mark.parametrize(
    ("text", "stops", "cut"),
    [("hello world", (), None), ("hello world", ("wor",), 6), ("a.b.c", (".", "b"), 1), ("abc", ("",), None)],
)
def test_first_stop(text: str, stops: tuple[str, ...], cut: int | None) -> None:
    assert _first_stop(text, stops) == cut


@pytest.mark.parametrize(
    ("text", "stops", "visible"),
    [
        ("hello", (), "hello"),
        ("hello\ufffd", (), "hello"),
        ("hello wo", ("world",), "hello "),
        ("hello", ("lo!",), "hel"),
        ("hello", ("xyz",), "hello"),
    ],
)
def test_holdback(text: str, stops: tuple[str, ...], visible: str) -> None:
    assert _holdback(text, stops) == visible


# ------------------------------------------------------------------------------------------------
# adapter bank (no model needed: a synthetic spec)


def _spec(max_rank: int = 8) -> ModelSpec:
    return ModelSpec(
        name="unit", source="unit", fingerprint="ab" * 32, architecture="LlamaForCausalLM",
        model_type="llama", n_layers=2, n_heads=2, n_kv_heads=1, head_dim=4, hidden=8, vocab=32,
        eos_token_ids=(2,), bos_token_id=1, has_chat_template=False,
        targets={"q_proj": (8, 8), "v_proj": (8, 4)},
        module_paths={"q_proj": "model.layers.{layer}.self_attn.q_proj",
                      "v_proj": "model.layers.{layer}.self_attn.v_proj"},
        max_rank=max_rank, bank_dtype="float32", input_names=("input_ids",), output_names=("logits",),
        validation=Validation(1e-3, 1e-3, 0.0, 0.0, 0.0, 0.0, 1.0), created="2025-01-01T00:00:00Z",
    )  # fmt: skip


def _adapter(spec: ModelSpec, rank: int, modules: tuple[str, ...] = ("q_proj", "v_proj")) -> LoadedAdapter:
    rng = np.random.default_rng(rank)
    tensors = {}
    for layer in range(spec.n_layers):
        for m in modules:
            d_in, d_out = spec.target_shape(m)
            tensors[f"lora_A.{layer}.{m}"] = rng.standard_normal((d_in, rank)).astype(np.float32)
            tensors[f"lora_B.{layer}.{m}"] = rng.standard_normal((rank, d_out)).astype(np.float32)
    manifest = AdapterManifest(twin_id=f"t{rank}", version=1, base_fingerprint=spec.fingerprint, rank=rank,
                               alpha=2.0 * rank, target_modules=modules)  # fmt: skip
    return LoadedAdapter(manifest, tensors)


def test_bank_grows_to_the_largest_resident_rank_and_keeps_slots() -> None:
    spec = _spec(max_rank=8)
    bank = AdapterBank(spec, slots=4)
    assert bank.rank == 1 and bank.arrays["lora_A.0.q_proj"].shape == (4, 8, 1)
    assert bank.nbytes == 8 * bank.resident_nbytes  # budgeted at max_rank
    small, big = _adapter(spec, 2), _adapter(spec, 4, modules=("q_proj",))
    bank.load(1, small)
    bank.load(2, big)
    assert bank.rank == 4 and bank.arrays["lora_B.1.v_proj"].shape == (4, 4, 4)
    a1, b1 = small.bank_rows(1, "v_proj", 4)
    np.testing.assert_array_equal(bank.arrays["lora_A.1.v_proj"][1], a1)
    np.testing.assert_array_equal(bank.arrays["lora_B.1.v_proj"][1], b1)
    assert not bank.arrays["lora_A.0.v_proj"][2].any()  # big has no v_proj: zero rows
    assert not bank.arrays["lora_A.0.q_proj"][0].any()  # slot 0 stays the base
    view = bank.values["lora_A.0.q_proj"].numpy()
    assert np.shares_memory(view, bank.arrays["lora_A.0.q_proj"])  # zero-copy binding
    bank.clear(1)
    assert not bank.arrays["lora_B.0.q_proj"][1].any() and bank.occupant(1) is None
    assert bank.occupant(2) == ("t4", 1)


def test_fixed_rank_bank_for_static_graphs() -> None:
    spec = _spec(max_rank=8)
    bank = AdapterBank(spec, slots=3, fixed_rank=2)
    bank.load(1, _adapter(spec, 2))
    assert bank.rank == 2
    with pytest.raises(AdapterShapeError):
        bank.load(2, _adapter(spec, 4))
    with pytest.raises(ModelError):
        AdapterBank(spec, slots=3, dtype="float16")
