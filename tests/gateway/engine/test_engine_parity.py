"""Oracle tests on the tiny model: the engine's mixed batches equal each adapter run alone in PEFT.

Every row of a batch mixes a different adapter (ranks 4, 8, 16 with different alpha/r, zero-padded
into a rank-16 bank) or the base (slot 0), with different prompt lengths (left padding). PyTorch
runs each row alone, unpadded, over the full sequence without a KV cache: an independent oracle for
prefill, KV-cache decode steps, batching, rows joining and leaving.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.model.prepare import PreparedModel, prepare_model
from edge.model.runtime import quiet_libraries, transformers_api
from edge.model.sources import smollm2_tokenizer
from edge.model.validate import random_adapter, spec_layout, to_peft
from gateway.engine import (
    Engine,
    EngineOptions,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    TokenEvent,
    chat_prompt,
)
from shared.adapters import LoadedAdapter, export_peft, import_peft, read_adapter, write_adapter
from shared.errors import AdapterBaseMismatch, AdapterShapeError, ModelError
from shared.modelspec import ModelSpec, default_cache_dir

ATOL = 1e-4  # fp32 engine vs PyTorch, logits of the tiny model are O(1)
ADAPTERS = {1: (4, 12.0, 101), 2: (8, 8.0, 102), 3: (16, 40.0, 103)}  # slot: (rank, alpha, seed)


def _prepare(root: Path, bank_dtype: str) -> PreparedModel:
    tokenizer = smollm2_tokenizer(default_cache_dir(os.environ), lambda _msg: None)
    shutil.copytree(tokenizer, root / "tokenizers" / "smollm2-135m")
    return prepare_model("tiny", root, max_rank=16, bank_dtype=bank_dtype)  # type: ignore[arg-type]


def _adapters(spec: ModelSpec, folder: Path) -> dict[int, LoadedAdapter]:
    """Random adapters written as artifacts and read back (the path the gateway takes)."""
    out = {}
    for slot, (rank, alpha, seed) in ADAPTERS.items():
        made = random_adapter(
            dataclasses.replace(spec_layout(spec), bank_dtype="float32"), rank, seed, spec.fingerprint
        )
        manifest = dataclasses.replace(made.manifest, twin_id=f"twin-{slot}", alpha=alpha)
        path = folder / f"twin-{slot}.onnx_adapter"
        write_adapter(path, made.tensors, manifest)
        out[slot] = read_adapter(path, spec)
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedModel:
    return _prepare(tmp_path_factory.mktemp("engine-fp32"), "float32")


@pytest.fixture(scope="module")
def adapters(prepared: PreparedModel, tmp_path_factory: pytest.TempPathFactory) -> dict[int, LoadedAdapter]:
    return _adapters(prepared.spec, tmp_path_factory.mktemp("adapters"))


@pytest.fixture(scope="module")
def engine(prepared: PreparedModel, adapters: dict[int, LoadedAdapter]) -> Engine:
    eng = Engine(prepared.path, EngineOptions(threads=2, slots=8, max_batch=8))
    assert eng.bank is not None
    for slot, adapter in adapters.items():
        eng.bank.load(slot, adapter)
    return eng


@pytest.fixture(scope="module")
def oracles(prepared: PreparedModel, adapters: dict[int, LoadedAdapter]) -> dict[int, Any]:
    """slot -> a PyTorch model that is the base (slot 0) or PEFT holding that slot's adapter."""
    tf = transformers_api()
    models = {}
    for slot in (0, *adapters):
        with quiet_libraries():
            model = tf.AutoModelForCausalLM.from_pretrained(str(prepared.hf_dir), dtype="float32").eval()
        models[slot] = model if slot == 0 else to_peft(model, adapters[slot], prepared.spec.module_paths)
    return models


def torch_logits(model: Any, prompt: Sequence[int], continuation: Sequence[int]) -> np.ndarray:
    """[len(continuation) + 1, vocab]: the logits after the prompt and after each continuation token."""
    import torch

    ids = torch.tensor([[*prompt, *continuation]])
    with torch.no_grad(), quiet_libraries():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 :]
    return np.asarray(logits.float().numpy())


def ids_of(request: GenerationRequest) -> list[int]:
    if isinstance(request.prompt, str):
        raise TypeError("these oracle tests use token-id prompts")
    return list(request.prompt)


def prompts_for(lengths: Sequence[int], seed: int) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    return [tuple(int(t) for t in rng.integers(16, 49000, n)) for n in lengths]


def run_all(engine: Engine, requests: Sequence[GenerationRequest]) -> dict[str, list[TokenEvent]]:
    """Drive a generator to the end, collecting every row's events."""
    gen = engine.generator(keep_logits=True)
    events: dict[str, list[TokenEvent]] = {r.request_id: [] for r in requests}
    for e in gen.add(requests):
        events[e.request_id].append(e)
    while len(gen):
        for e in gen.step():
            events[e.request_id].append(e)
    return events


def solo(engine: Engine, request: GenerationRequest) -> GenerationResult:
    return engine.generate([request])[0]


def test_mixed_batch_matches_each_adapter_alone(engine: Engine, oracles: dict[int, Any]) -> None:
    slots = [1, 0, 2, 3, 0, 1]
    prompts = prompts_for([5, 9, 3, 7, 4, 6], seed=1)
    requests = [
        GenerationRequest(f"r{i}", p, slot=s, max_new_tokens=4)
        for i, (p, s) in enumerate(zip(prompts, slots, strict=True))
    ]
    events = run_all(engine, requests)
    for req in requests:
        got = events[req.request_id]
        tokens = [e.token_id for e in got]
        assert len(tokens) == 4 and got[-1].finish_reason == "length"
        want = torch_logits(oracles[req.slot], ids_of(req), tokens[:-1])  # prefill + 3 decode steps
        ours = np.stack([e.logits for e in got if e.logits is not None])
        assert np.abs(ours - want).max() < ATOL, req.request_id
        assert tokens == [int(row.argmax()) for row in want]  # greedy tokens identical
    # the adapters matter: the same prompt on another slot gives other logits
    moved = torch_logits(oracles[0], ids_of(requests[0]), [])
    first_slot1 = events["r0"][0].logits
    assert first_slot1 is not None and np.abs(first_slot1 - moved[0]).max() > 100 * ATOL


def test_rows_joining_mid_decode_equal_their_solo_runs(engine: Engine, oracles: dict[int, Any]) -> None:
    first = [
        GenerationRequest("a", prompts_for([6], 2)[0], slot=1, max_new_tokens=8),
        GenerationRequest("b", prompts_for([3], 3)[0], slot=0, max_new_tokens=6),
    ]
    late = [
        GenerationRequest("c", prompts_for([12], 4)[0], slot=2, max_new_tokens=5),  # longer than the batch
        GenerationRequest("d", prompts_for([2], 5)[0], slot=3, max_new_tokens=7),
    ]  # shorter than the batch
    gen = engine.generator()
    tokens: dict[str, list[int]] = {r.request_id: [] for r in (*first, *late)}
    for e in gen.add(first):
        tokens[e.request_id].append(e.token_id)
    for _ in range(2):
        for e in gen.step():
            tokens[e.request_id].append(e.token_id)
    for e in gen.add(late):
        tokens[e.request_id].append(e.token_id)
    assert len(gen) == 4 and gen.active_slots() == frozenset({0, 1, 2, 3})
    while len(gen):
        for e in gen.step():
            tokens[e.request_id].append(e.token_id)
    for req in (*first, *late):
        assert tokens[req.request_id] == list(solo(engine, req).token_ids), req.request_id
        want = torch_logits(oracles[req.slot], ids_of(req), tokens[req.request_id][:-1])
        assert tokens[req.request_id] == [int(row.argmax()) for row in want]


def test_rows_finishing_early_leave_the_batch(engine: Engine) -> None:
    prompts = prompts_for([4, 8, 5], seed=6)
    requests = [
        GenerationRequest(f"e{i}", p, slot=i + 1, max_new_tokens=n)
        for i, (p, n) in enumerate(zip(prompts, (1, 3, 6), strict=True))
    ]
    gen = engine.generator()
    finished = [e.request_id for e in gen.add(requests) if e.finished]
    assert finished == ["e0"] and len(gen) == 2
    sizes = []
    results: dict[str, GenerationResult] = {}
    while len(gen):
        for e in gen.step():
            if e.result is not None:
                results[e.request_id] = e.result
        sizes.append(len(gen))
    assert sizes == [2, 1, 1, 1, 0]
    for req in requests[1:]:
        assert results[req.request_id].token_ids == solo(engine, req).token_ids


def test_cancel_drops_a_row(engine: Engine) -> None:
    requests = [
        GenerationRequest("x", prompts_for([5], 7)[0], slot=1, max_new_tokens=5),
        GenerationRequest("y", prompts_for([7], 8)[0], slot=2, max_new_tokens=5),
    ]
    gen = engine.generator()
    tokens = [e.token_id for e in gen.add(requests) if e.request_id == "y"]
    assert gen.cancel("x") and not gen.cancel("x") and len(gen) == 1
    while len(gen):
        tokens += [e.token_id for e in gen.step()]
    assert tuple(tokens) == solo(engine, requests[1]).token_ids


def test_eos_ends_a_row(engine: Engine) -> None:
    sampled = SamplingParams(
        temperature=1.0, seed=5
    )  # varied tokens: the random tiny model loops when greedy
    req = GenerationRequest("eos", prompts_for([6], 9)[0], slot=2, sampling=sampled, max_new_tokens=8)
    tokens = solo(engine, req).token_ids
    k = next(i for i in range(1, len(tokens)) if tokens[i] not in tokens[:i])
    saved = engine.eos_ids
    engine.eos_ids = frozenset({tokens[k]})
    try:
        result = solo(engine, req)
        ignored = solo(
            engine, dataclasses.replace(req, sampling=dataclasses.replace(sampled, ignore_eos=True))
        )
    finally:
        engine.eos_ids = saved
    assert result.finish_reason == "eos" and result.token_ids == tokens[:k]
    assert ignored.finish_reason == "length" and ignored.token_ids == tokens


def test_stop_strings_cut_the_text_and_deltas_add_up(engine: Engine) -> None:
    req = GenerationRequest("s", "The weather today is", slot=3, max_new_tokens=12)
    full = solo(engine, req)
    cut = max(1, len(full.text) // 2)
    stop = full.text[cut : cut + 3]
    assert stop.strip(), full.text
    events = run_all(engine, [dataclasses.replace(req, stop=(stop,))])["s"]
    result = events[-1].result
    assert result is not None and result.finish_reason == "stop"
    assert result.text == full.text[: full.text.find(stop)]
    assert "".join(e.text_delta for e in events) == result.text
    assert result.prompt_tokens == len(engine.codec.encode("The weather today is"))


def test_seeded_sampling_does_not_depend_on_the_batch(engine: Engine) -> None:
    sampling = SamplingParams(temperature=0.9, top_p=0.95, seed=123)
    req = GenerationRequest("t", prompts_for([5], 10)[0], slot=1, sampling=sampling, max_new_tokens=6)
    alone = solo(engine, req).token_ids
    others = [
        GenerationRequest(
            f"o{i}", p, slot=i, sampling=SamplingParams(temperature=1.0, seed=i), max_new_tokens=4
        )
        for i, p in enumerate(prompts_for([3, 8], 11))
    ]
    batched = {r.request_id: r for r in engine.generate([others[0], req, others[1]])}
    assert batched["t"].token_ids == alone
    reseeded = solo(
        engine, dataclasses.replace(req, sampling=dataclasses.replace(sampling, seed=124))
    ).token_ids
    greedy = solo(engine, dataclasses.replace(req, sampling=SamplingParams())).token_ids
    assert reseeded != alone or greedy != alone


def test_hot_swap_and_clear_a_slot(engine: Engine, adapters: dict[int, LoadedAdapter]) -> None:
    assert engine.bank is not None
    req = GenerationRequest("h", prompts_for([6], 12)[0], slot=4, max_new_tokens=5)
    engine.bank.load(4, adapters[1])
    assert solo(engine, req).token_ids == solo(engine, dataclasses.replace(req, slot=1)).token_ids
    assert engine.bank.occupant(4) == ("twin-1", 0)
    engine.bank.load(4, adapters[3])  # in place: the next run sees the new adapter
    assert solo(engine, req).token_ids == solo(engine, dataclasses.replace(req, slot=3)).token_ids
    engine.bank.clear(4)
    assert engine.bank.occupant(4) is None
    assert solo(engine, req).token_ids == solo(engine, dataclasses.replace(req, slot=0)).token_ids


def test_bank_refuses_bad_slots_and_adapters(engine: Engine, adapters: dict[int, LoadedAdapter]) -> None:
    bank = engine.bank
    assert bank is not None
    with pytest.raises(ModelError, match="slot 0"):
        bank.load(0, adapters[1])
    with pytest.raises(ModelError):
        bank.load(bank.slots, adapters[1])
    other = dataclasses.replace(adapters[1].manifest, base_fingerprint="cd" * 32)
    with pytest.raises(AdapterBaseMismatch):
        bank.load(5, LoadedAdapter(other, adapters[1].tensors))
    too_big = dataclasses.replace(adapters[1].manifest, rank=32)
    with pytest.raises(AdapterShapeError):
        bank.load(5, LoadedAdapter(too_big, adapters[1].tensors))


@pytest.mark.parametrize(
    "request_",
    [
        GenerationRequest("bad", (1, 2), slot=99),
        GenerationRequest("bad", ()),
        GenerationRequest("bad", (10**6,)),
        GenerationRequest("bad", (5,), max_new_tokens=0),
        GenerationRequest("bad", (5,), sampling=SamplingParams(top_p=2.0)),
    ],
)
def test_invalid_requests(engine: Engine, request_: GenerationRequest) -> None:
    with pytest.raises(ModelError):
        engine.generator().add([request_])


def test_batch_capacity(engine: Engine) -> None:
    requests = [
        GenerationRequest(str(i), (5, 6), max_new_tokens=2) for i in range(engine.options.max_batch + 1)
    ]
    with pytest.raises(ModelError, match="batch full"):
        engine.generator().add(requests)


def test_text_prompt_with_chat_template(engine: Engine) -> None:
    prompt = chat_prompt("hello", system="be brief")
    assert prompt.startswith("<|im_start|>system\nbe brief<|im_end|>\n") and prompt.endswith("assistant\n")
    result = solo(engine, GenerationRequest("c", prompt, max_new_tokens=3))
    ids = engine.codec.encode(prompt)
    assert ids[0] == 1 and ids.count(1) == 3  # <|im_start|> three times, no extra BOS
    assert result.prompt_tokens == len(ids) and len(result.token_ids) <= 3


@pytest.fixture(scope="module")
def fp16_engine(
    tmp_path_factory: pytest.TempPathFactory, prepared: PreparedModel, adapters: dict[int, LoadedAdapter]
) -> Iterator[Engine]:
    fp32 = prepared
    root = tmp_path_factory.mktemp("engine-fp16") / "cache"
    shutil.copytree(fp32.path.parent.parent, root, copy_function=os.link)  # reuse the export
    prepared = prepare_model("tiny", root, max_rank=16, bank_dtype="float16")
    eng = Engine(prepared.path, EngineOptions(threads=2, slots=4))
    assert eng.bank is not None and eng.bank.arrays["lora_A.0.q_proj"].dtype == np.float16
    for slot, adapter in adapters.items():
        eng.bank.load(
            slot,
            dataclasses.replace(
                adapter,
                manifest=dataclasses.replace(adapter.manifest, base_fingerprint=prepared.spec.fingerprint),
            ),
        )
    yield eng


def test_fp16_bank_within_looser_tolerance(fp16_engine: Engine, oracles: dict[int, Any]) -> None:
    slots = [3, 0, 1, 2]
    prompts = prompts_for([4, 7, 6, 3], seed=13)
    requests = [
        GenerationRequest(f"h{i}", p, slot=s, max_new_tokens=3)
        for i, (p, s) in enumerate(zip(prompts, slots, strict=True))
    ]
    events = run_all(fp16_engine, requests)
    worst = 0.0
    for req in requests:
        got = events[req.request_id]
        want = torch_logits(oracles[req.slot], ids_of(req), [e.token_id for e in got][:-1])
        worst = max(
            worst, float(np.abs(np.stack([e.logits for e in got if e.logits is not None]) - want).max())
        )
    assert worst < 2e-3  # fp16 rounding of A and B (scaled) only; the base weights stay fp32 (measured 3e-4)


def test_engine_imports_and_runs_without_torch(
    prepared: PreparedModel, tmp_path: Path, adapters: dict[int, LoadedAdapter]
) -> None:
    artifact = tmp_path / "t.onnx_adapter"
    write_adapter(artifact, adapters[2].tensors, adapters[2].manifest)
    script = f"""
import json, sys
for blocked in ("torch", "transformers", "peft", "optimum", "onnx"):
    sys.modules[blocked] = None  # any import of these now raises ImportError
from pathlib import Path
from gateway.engine import Engine, EngineOptions, GenerationRequest
from shared.adapters import read_adapter
engine = Engine(Path({str(prepared.path)!r}), EngineOptions(threads=1, slots=2))
engine.bank.load(1, read_adapter(Path({str(artifact)!r}), engine.spec))
result = engine.generate([GenerationRequest("r", "hello", slot=1, max_new_tokens=3)])[0]
print(json.dumps({{"tokens": list(result.token_ids)}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["tokens"]) == 3


def test_peft_directories_round_trip(
    prepared: PreparedModel, adapters: dict[int, LoadedAdapter], engine: Engine, tmp_path: Path
) -> None:
    """export_peft -> PeftModel.from_pretrained serves what the engine serves; PEFT's own
    save_pretrained -> import_peft gives back the same tensors and scale."""
    peft: Any = importlib.import_module("peft")
    spec, adapter = prepared.spec, adapters[2]
    export_peft(adapter, spec, tmp_path / "exported")
    with quiet_libraries():
        base = transformers_api().AutoModelForCausalLM.from_pretrained(str(prepared.hf_dir)).eval()
        loaded = peft.PeftModel.from_pretrained(base, str(tmp_path / "exported")).eval()
    prompt = prompts_for([6], 20)[0]
    event = engine.generator(keep_logits=True).add(
        [GenerationRequest("p", prompt, slot=2, max_new_tokens=1)]
    )[0]
    assert event.logits is not None
    assert np.abs(event.logits - torch_logits(loaded, prompt, [])[0]).max() < ATOL
    with quiet_libraries():
        loaded.save_pretrained(str(tmp_path / "saved"))
    tensors, manifest = import_peft(tmp_path / "saved", spec, twin_id="twin-2", version=1)
    assert manifest.scale == pytest.approx(adapter.manifest.scale)
    assert manifest.target_modules == adapter.manifest.target_modules
    for name, value in adapter.tensors.items():
        np.testing.assert_array_equal(tensors[name], value)
