"""``llmtwin model prepare``: base source -> HF dir -> fingerprint -> ONNX (+ per-row LoRA) -> validated.

Phases, each reported through ``progress``::

    source      build the fp32 HF directory (GGUF dequantization, tiny random model, or a local copy)
    fingerprint sha256 of config + weights; names the cache directory
    export      optimum's KV-cache ONNX export (reused from an earlier prepare of the same weights)
    lora        graph surgery: adapter bank inputs, per-row LoRA, last-position logits
    validate    ORT vs PyTorch/PEFT with explicit tolerances (ExportError when out of tolerance)
    publish     write model.json, then move the finished directory into place

Everything is built in ``<cache>/tmp/prepare-<pid>-<random>/`` and published with a rename, so a
failure or interrupt never leaves a half-written model directory; staging directories of dead
processes are removed on the next run. Preparing again returns the cached directory when source,
weights and LoRA settings match; other LoRA settings reuse the HF directory and the optimum export.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.model.export import build_lora_graph, check_kv_layout, export_base, io_names
from edge.model.fingerprint import fingerprint_hf_dir
from edge.model.runtime import Progress, quiet_libraries, transformers_api
from edge.model.sources import build_gguf, build_local, build_tiny, smollm2_gguf, smollm2_tokenizer
from edge.model.targets import find_sites
from edge.model.validate import GraphLayout, Tolerance, validate_export
from edge.staging import remove_dead_staging, staging
from shared.adapters import utc_now
from shared.errors import ModelError, ModelSourceError
from shared.modelspec import (
    BANK_DTYPES,
    BASE_ONNX_FILE,
    BUILTIN_BASES,
    DEFAULT_LORA_TARGETS,
    HF_DIR,
    MODELS_DIR,
    ONNX_FILE,
    SPEC_FILE,
    TOKENIZER_FILE,
    BankDtype,
    ModelSpec,
    Validation,
    find_prepared,
    load_spec,
    model_dir_name,
    source_name,
)

STAGING_PREFIX = "prepare-"  # <cache>/tmp/prepare-<pid>-<hex>


@dataclass(frozen=True, slots=True)
class PrepareOptions:
    """LoRA serving settings baked into the graph. Adapters of rank <= max_rank fit a bank slot."""

    max_rank: int = 16
    targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    bank_dtype: BankDtype = "float32"
    tolerance: Tolerance = field(default_factory=Tolerance)

    def check(self) -> None:
        if not 1 <= self.max_rank <= 256:
            raise ModelError(f"max_rank = {self.max_rank}: must be in [1, 256]")
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise ModelError(f"targets = {list(self.targets)}: must be a non-empty list without repeats")
        if self.bank_dtype not in BANK_DTYPES:
            raise ModelError(f"bank_dtype = {self.bank_dtype!r}: must be one of {', '.join(BANK_DTYPES)}")

    def matches(self, spec: ModelSpec) -> bool:
        return (spec.max_rank, spec.target_modules, spec.bank_dtype) == (
            self.max_rank,
            tuple(sorted(self.targets)),
            self.bank_dtype,
        )


@dataclass(frozen=True, slots=True)
class PreparedModel:
    path: Path
    spec: ModelSpec
    reused: bool

    @property
    def onnx_path(self) -> Path:
        return self.path / self.spec.onnx_file

    @property
    def base_onnx_path(self) -> Path:
        return self.path / self.spec.base_onnx_file

    @property
    def tokenizer_path(self) -> Path:
        return self.path / self.spec.tokenizer_file

    @property
    def hf_dir(self) -> Path:
        return self.path / HF_DIR


def prepare_model(
    base: str,
    cache_dir: Path,
    *,
    max_rank: int = 16,
    targets: Sequence[str] = DEFAULT_LORA_TARGETS,
    bank_dtype: BankDtype = "float32",
    progress: Progress | None = None,
    tolerance: Tolerance | None = None,
) -> PreparedModel:
    """Prepare ``base`` (``smollm2-135m`` | ``tiny`` | a local HF directory or .gguf) in ``cache_dir``."""
    opts = PrepareOptions(max_rank, tuple(targets), bank_dtype, tolerance or Tolerance())
    opts.check()
    report = progress or (lambda _msg: None)
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_staging(cache_dir / "tmp", STAGING_PREFIX)
    source = base if base in BUILTIN_BASES else str(Path(base).expanduser().resolve())
    earlier = find_prepared(cache_dir, base) if base == "smollm2-135m" else None  # conversion is the slow part
    if earlier is not None:
        spec = load_spec(earlier)
        if opts.matches(spec):
            report(f"{base}: using the prepared model in {earlier}")
            return PreparedModel(earlier, spec, reused=True)
    with staging(cache_dir / "tmp", STAGING_PREFIX) as stage:
        if earlier is not None:
            _link_tree(earlier / HF_DIR, stage / HF_DIR)
        else:
            _build_source(base, stage / HF_DIR, cache_dir, report)
        report(f"{base}: fingerprinting the weights")
        fingerprint = fingerprint_hf_dir(stage / HF_DIR)
        final = cache_dir / MODELS_DIR / model_dir_name(source_name(base), fingerprint)
        done = _reusable(final, source, fingerprint, opts)
        if done is not None:
            report(f"{base}: using the prepared model in {final}")
            return done
        spec = _build_graphs(stage, base, source, fingerprint, opts, final, report)
        report(f"{base}: publishing {final}")
        _publish(stage, final)
    return PreparedModel(final, spec, reused=False)


def _build_source(base: str, hf: Path, cache_dir: Path, report: Progress) -> None:
    report(f"{base}: building the Hugging Face model directory")
    if base == "smollm2-135m":
        build_gguf(smollm2_gguf(cache_dir, report), hf, smollm2_tokenizer(cache_dir, report), report)
    elif base == "tiny":
        build_tiny(hf, smollm2_tokenizer(cache_dir, report))
    else:
        path = Path(base).expanduser()
        if not path.exists():
            raise ModelSourceError(
                f"{base}: no such model directory or file (builtin bases: {', '.join(BUILTIN_BASES)})"
            )
        build_local(path.resolve(), hf, report)


def _build_graphs(
    stage: Path, base: str, source: str, fingerprint: str, opts: PrepareOptions, final: Path, report: Progress
) -> ModelSpec:
    hf = stage / HF_DIR
    info = _describe(hf, opts.targets)
    dims = info.config
    base_onnx = stage / BASE_ONNX_FILE
    if (final / BASE_ONNX_FILE).is_file() and _spec_or_none(final, fingerprint) is not None:
        _link_tree((final / BASE_ONNX_FILE).parent, base_onnx.parent)
    else:
        report(f"{base}: exporting to ONNX with KV cache (optimum)")
        export_base(hf, base_onnx.parent)
    where = f"{len(info.sites)} projections"
    report(f"{base}: adding per-row LoRA (max rank {opts.max_rank}, {opts.bank_dtype} bank) to {where}")
    graph = build_lora_graph(base_onnx, stage / ONNX_FILE, info.sites, opts.bank_dtype)
    check_kv_layout(graph, dims["n_kv_heads"], dims["head_dim"])
    inputs, outputs = io_names(graph)
    del graph
    report(f"{base}: validating ONNX against PyTorch and PEFT")
    kv = (dims["n_kv_heads"], dims["head_dim"])
    layout = GraphLayout(tuple(info.sites), dims["n_layers"], *kv, opts.max_rank, opts.bank_dtype)
    validation = validate_export(hf, stage / ONNX_FILE, layout, info.templates, opts.tolerance)
    report(_describe_validation(validation))
    shutil.copy2(hf / "tokenizer.json", stage / TOKENIZER_FILE)
    spec = info.spec(source_name(base), source, fingerprint, opts, (inputs, outputs), validation)
    (stage / SPEC_FILE).write_text(spec.to_json(), encoding="utf-8")
    return spec


@dataclass(frozen=True)
class _ModelInfo:
    architecture: str
    model_type: str
    config: dict[str, int]  # n_layers, n_heads, n_kv_heads, head_dim, hidden, vocab
    eos_ids: tuple[int, ...]
    bos_id: int | None
    has_chat_template: bool
    sites: list[Any]
    templates: dict[str, str]

    def spec(
        self,
        name: str,
        source: str,
        fingerprint: str,
        opts: PrepareOptions,
        io: tuple[tuple[str, ...], tuple[str, ...]],
        validation: Validation,
    ) -> ModelSpec:
        dims = self.config
        return ModelSpec(
            name=name, source=source, fingerprint=fingerprint, architecture=self.architecture,
            model_type=self.model_type, n_layers=dims["n_layers"], n_heads=dims["n_heads"],
            n_kv_heads=dims["n_kv_heads"], head_dim=dims["head_dim"], hidden=dims["hidden"],
            vocab=dims["vocab"], eos_token_ids=self.eos_ids, bos_token_id=self.bos_id,
            has_chat_template=self.has_chat_template,
            targets={s.module: (s.d_in, s.d_out) for s in self.sites}, module_paths=self.templates,
            max_rank=opts.max_rank, bank_dtype=opts.bank_dtype, input_names=io[0], output_names=io[1],
            validation=validation, created=utc_now(),
        )  # fmt: skip


def _describe(hf: Path, targets: Sequence[str]) -> _ModelInfo:
    """Dimensions, special tokens and LoRA sites of the staged HF directory."""
    tf = transformers_api()
    with quiet_libraries():
        model = tf.AutoModelForCausalLM.from_pretrained(str(hf))
        tok = tf.AutoTokenizer.from_pretrained(str(hf))
    cfg = model.config
    heads = int(cfg.num_attention_heads)
    dims = {
        "n_layers": int(cfg.num_hidden_layers),
        "n_heads": heads,
        "n_kv_heads": int(getattr(cfg, "num_key_value_heads", None) or heads),
        "head_dim": int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads),
        "hidden": int(cfg.hidden_size),
        "vocab": int(cfg.vocab_size),
    }
    sites, templates = find_sites(model, targets, dims["n_layers"])
    eos: list[int] = []
    for source in (_generation_eos(hf), cfg.eos_token_id, tok.eos_token_id):
        for tid in source if isinstance(source, list) else [source]:
            if isinstance(tid, int) and tid not in eos:
                eos.append(tid)
    archs = list(getattr(cfg, "architectures", None) or [type(model).__name__])
    bos = cfg.bos_token_id if isinstance(cfg.bos_token_id, int) else None
    return _ModelInfo(
        archs[0],
        str(cfg.model_type),
        dims,
        tuple(eos),
        bos,
        bool(getattr(tok, "chat_template", None)),
        sites,
        templates,
    )


def _generation_eos(hf: Path) -> Any:
    try:
        return json.loads((hf / "generation_config.json").read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, ValueError):
        return None


def _describe_validation(v: Validation) -> str:
    return (
        f"validation ok (atol {v.atol:g}, rtol {v.rtol:g}): base prefill {v.base_prefill_max_abs_diff:.2e}, "
        f"base decode {v.base_decode_max_abs_diff:.2e}, LoRA prefill {v.lora_prefill_max_abs_diff:.2e}, "
        f"LoRA decode {v.lora_decode_max_abs_diff:.2e} (LoRA moved logits by {v.lora_effect_max_abs:.2f})"
    )


def _reusable(final: Path, source: str, fingerprint: str, opts: PrepareOptions) -> PreparedModel | None:
    spec = _spec_or_none(final, fingerprint)
    if spec is not None and spec.source == source and opts.matches(spec):
        return PreparedModel(final, spec, reused=True)
    return None


def _spec_or_none(model_dir: Path, fingerprint: str) -> ModelSpec | None:
    """The spec of a complete directory prepared from these weights, else None (absent, old, other)."""
    if not (model_dir / SPEC_FILE).is_file():
        return None
    try:
        spec = load_spec(model_dir)
    except ModelSourceError:
        return None
    return spec if spec.fingerprint == fingerprint else None


# ------------------------------------------------------------------------------------------------
# staging and publishing


def _publish(stage: Path, final: Path) -> None:
    """Rename the finished stage into place; an older directory (other settings) is swapped out."""
    final.parent.mkdir(parents=True, exist_ok=True)
    trash = stage.with_name(stage.name + "-old")
    if final.exists():
        os.rename(final, trash)
    try:
        os.rename(stage, final)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def _link_tree(src: Path, dst: Path) -> None:
    """Copy a directory as hard links (same filesystem: instant, no extra space)."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link)
