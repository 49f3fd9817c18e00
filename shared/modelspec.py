"""The prepared-model contract: ``model.json`` and the on-disk layout (stdlib only).

``llmtwin model prepare`` (``edge.model.prepare``) writes one directory per base model::

    <cache>/models/<name>-<fingerprint[:12]>/
        hf/                     the base as a Hugging Face model directory (fp32 safetensors)
        onnx/model.onnx         the serving graph: KV cache, per-row LoRA from an adapter bank,
                                logits for the last position only
        onnx/base/model.onnx    optimum's plain export (no LoRA inputs, logits for every position)
        tokenizer.json          a ``tokenizers.Tokenizer`` file
        model.json              this module's :class:`ModelSpec`

Graph contract (the gateway's adapter bank depends on these names)::

    input_ids        int64 [batch, seq]
    attention_mask   int64 [batch, past + seq]        1 = real token, 0 = left padding
    position_ids     int64 [batch, seq]
    past_key_values.{i}.key / .value   float32 [batch, n_kv_heads, past, head_dim]
    lora_index       int64 [batch]                    bank slot per row; slot 0 is all zeros
    lora_A.{i}.{m}   bank dtype [slots, d_in, R]      R (dynamic) <= max_rank; ranks below R zero-padded
    lora_B.{i}.{m}   bank dtype [slots, R, d_out]     (alpha / r folded in)
    -> logits        float32 [batch, 1, vocab]        last position only
    -> present.{i}.key / .value        float32 [batch, n_kv_heads, past + seq, head_dim]

Every adapter binds to the base ``fingerprint``: sha256 over the canonical config fields and every
weight tensor (name, dtype, shape, bytes) in name order (see ``edge.model.fingerprint``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from shared.errors import ModelSourceError
from shared.typed import FieldError, Length, Pattern, Range, from_plain, to_plain

SPEC_FILE = "model.json"
ONNX_FILE = "onnx/model.onnx"
BASE_ONNX_FILE = "onnx/base/model.onnx"
TOKENIZER_FILE = "tokenizer.json"
HF_DIR = "hf"
MODELS_DIR = "models"

LORA_INDEX = "lora_index"
# 2: the bank's rank axis is dynamic ("lora_rank"). Older directories are rebuilt by prepare.
FORMAT_VERSION = 2
BANK_DTYPES = ("float32", "float16")
# The projections LoRA goes on unless configured otherwise: attention q/v and the MLP's up/down. The
# MLP pair is where a round's facts are learned fastest: on SmolLM2-135M (home1's 410 facts, 240 s
# of training on the top 6 layers) exact-match accuracy on held-out paraphrases was 0.24 with q/v
# alone, 0.45 with q/v + up/down, 0.37 with up/down alone, 0.32 with all seven (slower steps).
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("q_proj", "v_proj", "up_proj", "down_proj")
BankDtype = Literal["float32", "float16"]
SHA256_HEX = r"[0-9a-f]{64}"
# Built-in sources; anything else is a local directory path.
BUILTIN_BASES = ("smollm2-135m", "tiny")


def lora_a_name(layer: int, module: str) -> str:
    """Bank input (graph) and adapter tensor name of the A matrix of one target projection."""
    return f"lora_A.{layer}.{module}"


def lora_b_name(layer: int, module: str) -> str:
    return f"lora_B.{layer}.{module}"


def past_names(layer: int) -> tuple[str, str]:
    return f"past_key_values.{layer}.key", f"past_key_values.{layer}.value"


def present_names(layer: int) -> tuple[str, str]:
    return f"present.{layer}.key", f"present.{layer}.value"


@dataclass(frozen=True, slots=True)
class Validation:
    """Export parity checks (ORT vs PyTorch), recorded in the spec.

    ``base_*``: the LoRA graph with every row on slot 0 vs the plain PyTorch model, prefill and one
    KV-cache decode step. ``lora_*``: a random PEFT LoRA loaded into a bank slot vs PEFT's forward.
    A pair passes when ``|ort - torch| <= atol + rtol * |torch|`` element-wise.
    """

    rtol: Annotated[float, Range(0.0, 1.0)]
    atol: Annotated[float, Range(0.0, 1.0)]
    base_prefill_max_abs_diff: Annotated[float, Range(0.0)]
    base_decode_max_abs_diff: Annotated[float, Range(0.0)]
    lora_prefill_max_abs_diff: Annotated[float, Range(0.0)]
    lora_decode_max_abs_diff: Annotated[float, Range(0.0)]
    lora_effect_max_abs: Annotated[float, Range(0.0)]  # how far the LoRA moved logits (non-vacuous)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the gateway needs to serve a prepared base model; written once by ``prepare``."""

    name: Annotated[str, Length(1, 128)]
    source: Annotated[str, Length(1, 4096)]
    fingerprint: Annotated[str, Pattern(SHA256_HEX)]
    architecture: Annotated[str, Length(1, 128)]
    model_type: Annotated[str, Length(1, 64)]
    n_layers: Annotated[int, Range(1, 1024)]
    n_heads: Annotated[int, Range(1, 1024)]
    n_kv_heads: Annotated[int, Range(1, 1024)]
    head_dim: Annotated[int, Range(1, 4096)]
    hidden: Annotated[int, Range(1, 1 << 16)]
    vocab: Annotated[int, Range(1, 1 << 22)]
    eos_token_ids: Annotated[tuple[int, ...], Length(0, 16)]
    bos_token_id: int | None
    has_chat_template: bool
    # module -> (d_in, d_out) of its projection, e.g. {"q_proj": (576, 576), "v_proj": (576, 192)}
    targets: Annotated[dict[str, tuple[int, ...]], Length(1, 16)]
    # module -> dotted torch path with a {layer} field, e.g. "model.layers.{layer}.self_attn.q_proj"
    module_paths: Annotated[dict[str, str], Length(1, 16)]
    max_rank: Annotated[int, Range(1, 1024)]
    bank_dtype: BankDtype
    input_names: Annotated[tuple[str, ...], Length(1, 4096)]
    output_names: Annotated[tuple[str, ...], Length(1, 4096)]
    validation: Validation
    created: Annotated[str, Length(1, 64)]
    onnx_file: str = ONNX_FILE
    base_onnx_file: str = BASE_ONNX_FILE
    tokenizer_file: str = TOKENIZER_FILE
    format_version: Annotated[int, Range(FORMAT_VERSION, FORMAT_VERSION)] = FORMAT_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        for module, shape in self.targets.items():
            if len(shape) != 2 or min(shape) < 1:
                raise FieldError(f"targets.{module}", list(shape), "must be [d_in, d_out], both >= 1")
        if set(self.module_paths) != set(self.targets):
            raise FieldError("module_paths", sorted(self.module_paths), "must name exactly the targets")
        for module, path in self.module_paths.items():
            if "{layer}" not in path:
                raise FieldError(f"module_paths.{module}", path, "must contain {layer}")

    @property
    def target_modules(self) -> tuple[str, ...]:
        return tuple(sorted(self.targets))

    def target_shape(self, module: str) -> tuple[int, int]:
        d_in, d_out = self.targets[module]
        return d_in, d_out

    def bank_names(self) -> tuple[tuple[int, str, str, str], ...]:
        """(layer, module, A input name, B input name) for every LoRA site, in a fixed order."""
        return tuple(
            (i, m, lora_a_name(i, m), lora_b_name(i, m)) for i in range(self.n_layers) for m in self.target_modules
        )

    def to_json(self) -> str:
        return json.dumps(to_plain(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, *, where: str = SPEC_FILE) -> ModelSpec:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ModelSourceError(f"{where}: not a valid model spec: {exc}") from exc
        version = doc.get("format_version") if isinstance(doc, dict) else None
        if isinstance(version, int) and version != FORMAT_VERSION:
            raise ModelSourceError(
                f"{where}: prepared in format {version}, this version reads {FORMAT_VERSION}: "
                "run `llmtwin model prepare` again"
            )
        try:
            return from_plain(cls, doc)
        except FieldError as exc:
            raise ModelSourceError(f"{where}: not a valid model spec: {exc}") from exc


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/llmtwin``, else ``~/.cache/llmtwin`` (``$HOME`` from ``env`` when set)."""
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says relative values are to be ignored
        return Path(xdg) / "llmtwin"
    home = env.get("HOME", "")
    return (Path(home) if home else Path.home()) / ".cache" / "llmtwin"


def source_name(base: str) -> str:
    """The short name a base source is cached under: the builtin name, or the directory's name."""
    if base in BUILTIN_BASES:
        return base
    stem = Path(base).expanduser().resolve().name or "model"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem)[:64]


def model_dir_name(name: str, fingerprint: str) -> str:
    return f"{name}-{fingerprint[:12]}"


def load_spec(model_dir: Path) -> ModelSpec:
    """Read ``model.json`` of a prepared model directory (ModelSourceError if missing/invalid)."""
    path = model_dir / SPEC_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelSourceError(f"{path}: cannot read the model spec ({exc.strerror})") from exc
    return ModelSpec.from_json(text, where=str(path))


def find_prepared(cache_dir: Path, base: str) -> Path | None:
    """The newest prepared directory for ``base`` (a builtin name or a local path), or None.

    A builtin matches on its name; a path matches on the absolute source path it was prepared from.
    Directories whose ``model.json`` is missing or invalid are skipped (a half-built one never has it).
    """
    root = cache_dir / MODELS_DIR
    if not root.is_dir():
        return None
    wanted_source = base if base in BUILTIN_BASES else str(Path(base).expanduser().resolve())
    found: list[tuple[str, Path]] = []
    for candidate in root.iterdir():
        if not (candidate / SPEC_FILE).is_file():
            continue
        try:
            spec = load_spec(candidate)
        except ModelSourceError:
            continue
        if spec.source == wanted_source:
            found.append((spec.created, candidate))
    return max(found)[1] if found else None
