"""Export parity: the per-row-LoRA ONNX graph against PyTorch (plain model and PEFT), explicit tolerances.

One mixed batch, left-padded, rows of different lengths::

    row 0: slot 0 (base), 9 tokens     row 1: slot 1 (LoRA), 5 tokens
    row 2: slot 0 (base), 3 tokens     row 3: slot 1 (LoRA), 9 tokens

Each row's last-position logits of the prefill and of one KV-cache decode step are compared with the
same row run alone, unpadded, in PyTorch: base rows against the plain model, LoRA rows against PEFT
with the same random LoRA (rank max_rank // 2, so the slot's zero padding is exercised; alpha = 2r,
a power-of-two scale so a float16 bank rounds exactly like the fp16-rounded PEFT weights).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.model.lora_graph import LoraSite
from edge.model.runtime import quiet_libraries, transformers_api
from shared.adapters import AdapterManifest, Array, LoadedAdapter
from shared.errors import ExportError
from shared.modelspec import LORA_INDEX, ModelSpec, Validation, past_names

ROWS = ((0, 9), (1, 5), (0, 3), (1, 9))  # (bank slot, prompt length)


@dataclass(frozen=True, slots=True)
class Tolerance:
    rtol: float = 1e-3
    atol: float = 1e-3


@dataclass(frozen=True, slots=True)
class GraphLayout:
    """What the check needs to know about the graph beyond its file."""

    sites: tuple[LoraSite, ...]
    n_layers: int
    n_kv_heads: int
    head_dim: int
    max_rank: int
    bank_dtype: str


def random_adapter(layout: GraphLayout, rank: int, seed: int, fingerprint: str = "0" * 64) -> LoadedAdapter:
    """A seeded LoRA on every site: A kaiming-uniform-like, B N(0, 0.05): moves logits visibly."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, Array] = {}
    for site in layout.sites:
        bound = 1.0 / np.sqrt(site.d_in)
        tensors[f"lora_A.{site.layer}.{site.module}"] = rng.uniform(-bound, bound, (site.d_in, rank)).astype(
            np.float32
        )
        tensors[f"lora_B.{site.layer}.{site.module}"] = rng.normal(0.0, 0.05, (rank, site.d_out)).astype(
            np.float32
        )
    if layout.bank_dtype == "float16":  # what the bank will hold: round once, here, for both sides
        tensors = {k: v.astype(np.float16).astype(np.float32) for k, v in tensors.items()}
    modules = tuple(sorted({s.module for s in layout.sites}))
    manifest = AdapterManifest(
        twin_id="validation",
        version=0,
        base_fingerprint=fingerprint,
        rank=rank,
        alpha=2.0 * rank,
        target_modules=modules,
    )
    return LoadedAdapter(manifest, tensors)


def to_peft(model: Any, adapter: LoadedAdapter, module_paths: dict[str, str]) -> Any:
    """Wrap ``model`` (in place) in a PEFT LoRA holding exactly ``adapter``'s weights."""
    import torch

    peft: Any = importlib.import_module("peft")
    man = adapter.manifest
    config = peft.LoraConfig(
        r=man.rank,
        lora_alpha=man.alpha,
        target_modules=list(man.target_modules),
        lora_dropout=0.0,
        bias="none",
        init_lora_weights=False,
    )
    with quiet_libraries():
        peft_model = peft.get_peft_model(model, config)
    inner = peft_model.base_model.model
    with torch.no_grad():
        for name, value in adapter.tensors.items():
            kind, layer, module = name.split(".")
            layer_mod = inner.get_submodule(module_paths[module].format(layer=layer))
            weight = (layer_mod.lora_A if kind == "lora_A" else layer_mod.lora_B)["default"].weight
            weight.copy_(
                torch.from_numpy(np.ascontiguousarray(value.T))
            )  # ours [in, out] -> Linear [out, in]
    return peft_model.eval()


def torch_reference(
    model: Any,
    prompts: Sequence[Sequence[int]],
    next_tokens: Sequence[int] | None = None,
) -> tuple[list[Array], list[Array], list[int]]:
    """Per prompt, alone: last-position prefill logits, next token (greedy unless given), decode logits."""
    import torch

    prefill, decode, chosen = [], [], []
    with torch.no_grad():
        for i, ids in enumerate(prompts):
            out = model(input_ids=torch.tensor([list(ids)]), use_cache=True)
            first = out.logits[0, -1].float().numpy()
            tok = int(first.argmax()) if next_tokens is None else next_tokens[i]
            step = model(input_ids=torch.tensor([[tok]]), past_key_values=out.past_key_values, use_cache=True)
            prefill.append(first)
            decode.append(step.logits[0, -1].float().numpy())
            chosen.append(tok)
    return prefill, decode, chosen


def run_graph(
    session: Any,
    layout: GraphLayout,
    prompts: Sequence[Sequence[int]],
    slots: Sequence[int],
    bank: dict[str, Array],
    next_tokens: Sequence[int],
) -> tuple[Array, Array]:
    """Left-padded batch through the ORT graph: logits [batch, vocab] of prefill and one decode step."""
    batch, width = len(prompts), max(len(p) for p in prompts)
    ids = np.zeros((batch, width), np.int64)
    mask = np.zeros((batch, width), np.int64)
    for r, p in enumerate(prompts):
        ids[r, width - len(p) :] = p
        mask[r, width - len(p) :] = 1
    feed: dict[str, Array] = {LORA_INDEX: np.asarray(slots, np.int64), **bank}
    for layer in range(layout.n_layers):
        for name in past_names(layer):
            feed[name] = np.zeros((batch, layout.n_kv_heads, 0, layout.head_dim), np.float32)
    out_names = [o.name for o in session.get_outputs()]
    positions = np.maximum(mask.cumsum(-1) - 1, 0)
    outs = dict(
        zip(
            out_names,
            session.run(None, {**feed, "input_ids": ids, "attention_mask": mask, "position_ids": positions}),
            strict=True,
        )
    )
    prefill = outs["logits"][:, -1]
    for layer in range(layout.n_layers):
        key, value = past_names(layer)
        feed[key], feed[value] = outs[f"present.{layer}.key"], outs[f"present.{layer}.value"]
    step_mask = np.concatenate([mask, np.ones((batch, 1), np.int64)], axis=1)
    step = session.run(
        ["logits"],
        {
            **feed,
            "input_ids": np.asarray(next_tokens, np.int64)[:, None],
            "attention_mask": step_mask,
            "position_ids": mask.sum(-1, keepdims=True),
        },
    )
    return prefill, step[0][:, -1]


def bank_with(layout: GraphLayout, adapters: dict[int, LoadedAdapter], slots: int) -> dict[str, Array]:
    """Bank arrays [slots, d_in, R] / [slots, R, d_out] with adapters in the given slots (others zero)."""
    dtype = np.float16 if layout.bank_dtype == "float16" else np.float32
    bank: dict[str, Array] = {}
    for site in layout.sites:
        a = np.zeros((slots, site.d_in, layout.max_rank), dtype)
        b = np.zeros((slots, layout.max_rank, site.d_out), dtype)
        for slot, adapter in adapters.items():
            a[slot], b[slot] = adapter.bank_rows(site.layer, site.module, layout.max_rank)
        bank[f"lora_A.{site.layer}.{site.module}"], bank[f"lora_B.{site.layer}.{site.module}"] = a, b
    return bank


def validate_export(
    hf_dir: Path,
    onnx_path: Path,
    layout: GraphLayout,
    module_paths: dict[str, str],
    tol: Tolerance = Tolerance(),
) -> Validation:
    """Compare the graph with PyTorch/PEFT on :data:`ROWS`; ExportError if any row is out of tolerance."""
    import onnxruntime as ort

    with quiet_libraries():
        model = transformers_api().AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype="float32").eval()
    rng = np.random.default_rng(7)
    prompts = [rng.integers(16, int(model.config.vocab_size), n).tolist() for _, n in ROWS]
    slots = [s for s, _ in ROWS]
    base_rows = [i for i, s in enumerate(slots) if s == 0]
    lora_rows = [i for i, s in enumerate(slots) if s != 0]
    adapter = random_adapter(layout, max(1, layout.max_rank // 2), seed=11)
    base, lora, moved = _torch_side(
        model, adapter, module_paths, [[prompts[i] for i in rows] for rows in (base_rows, lora_rows)]
    )
    if moved <= 10 * tol.atol:  # the LoRA must move the logits, or the comparison proves nothing
        raise ExportError(f"validation LoRA changed logits by only {moved:.3g}: the check would be vacuous")
    nexts = [0] * len(ROWS)
    for rows, ref in ((base_rows, base), (lora_rows, lora)):
        for i, tok in zip(rows, ref[2], strict=True):
            nexts[i] = tok
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ort_pre, ort_dec = run_graph(session, layout, prompts, slots, bank_with(layout, {1: adapter}, 2), nexts)
    return Validation(
        rtol=tol.rtol,
        atol=tol.atol,
        base_prefill_max_abs_diff=_check(ort_pre[base_rows], base[0], tol, "base prefill"),
        base_decode_max_abs_diff=_check(ort_dec[base_rows], base[1], tol, "base decode step"),
        lora_prefill_max_abs_diff=_check(ort_pre[lora_rows], lora[0], tol, "LoRA prefill"),
        lora_decode_max_abs_diff=_check(ort_dec[lora_rows], lora[1], tol, "LoRA decode step"),
        lora_effect_max_abs=moved,
    )


_Reference = tuple[Array, Array, list[int]]  # prefill logits [rows, vocab], decode logits, next tokens


def _torch_side(
    model: Any,
    adapter: LoadedAdapter,
    module_paths: dict[str, str],
    prompts: Sequence[Sequence[Sequence[int]]],
) -> tuple[_Reference, _Reference, float]:
    """Base rows on the plain model, LoRA rows on PEFT; and how far the LoRA moved the LoRA rows."""
    base_pre, base_dec, base_next = torch_reference(model, prompts[0])
    peft_model = to_peft(model, adapter, module_paths)
    lora_pre, lora_dec, lora_next = torch_reference(peft_model, prompts[1])
    with peft_model.disable_adapter():
        plain, _, _ = torch_reference(peft_model, prompts[1])
    moved = float(np.abs(np.stack(lora_pre) - np.stack(plain)).max())
    base = (np.stack(base_pre), np.stack(base_dec), base_next)
    return base, (np.stack(lora_pre), np.stack(lora_dec), lora_next), moved


def _check(got: Array, want: Array, tol: Tolerance, what: str) -> float:
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    max_diff = float(diff.max())
    if not np.isfinite(max_diff) or (diff > tol.atol + tol.rtol * np.abs(want)).any():
        raise ExportError(
            f"ONNX {what} logits differ from PyTorch: max abs diff {max_diff:.3g} "
            f"exceeds atol {tol.atol:g} + rtol {tol.rtol:g} * |reference|"
        )
    return max_diff


def spec_layout(spec: ModelSpec) -> GraphLayout:
    """The layout of an already prepared model (for re-validation and tests)."""
    sites = tuple(
        LoraSite(i, m, spec.module_paths[m].format(layer=i), *spec.target_shape(m))
        for i in range(spec.n_layers)
        for m in spec.target_modules
    )
    return GraphLayout(sites, spec.n_layers, spec.n_kv_heads, spec.head_dim, spec.max_rank, spec.bank_dtype)
