"""The base-model fingerprint every adapter binds to (stdlib only: no torch needed to check one).

sha256 over, in order:
  1. canonical JSON (sorted keys, no whitespace) of the config fields that change what the weights
     compute (:data:`CONFIG_FIELDS`); bookkeeping fields (transformers_version, _name_or_path, dtype)
     are left out so re-saving the same weights keeps the fingerprint;
  2. for every tensor of every ``*.safetensors`` file, sorted by tensor name: name, dtype, shape and
     the raw little-endian bytes.

Reading the safetensors container directly (an 8-byte header length, a JSON header, then the data)
avoids materialising tensors and works for any dtype, bf16 included.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any, BinaryIO

from shared.errors import ModelSourceError

CONFIG_FIELDS = (
    "architectures",
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "rms_norm_eps",
    "layer_norm_epsilon",
    "rope_theta",
    "rope_scaling",
    "max_position_embeddings",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    "use_sliding_window",
    "sliding_window",
)
_CHUNK = 1 << 22
_MAX_HEADER = 100 << 20  # safetensors itself caps the header at 100 MB


def canonical_config(config: dict[str, Any]) -> bytes:
    relevant = {k: config[k] for k in CONFIG_FIELDS if k in config}
    return json.dumps(relevant, sort_keys=True, separators=(",", ":")).encode()


def fingerprint_hf_dir(hf_dir: Path) -> str:
    """The fingerprint of a Hugging Face model directory holding config.json + safetensors files."""
    try:
        config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"{hf_dir}: cannot read config.json: {exc}") from exc
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise ModelSourceError(f"{hf_dir}: no *.safetensors weight files")
    digest = hashlib.sha256()
    digest.update(b"config\0" + canonical_config(config))
    entries = sorted((name, path, meta) for path in files for name, meta in _header(path).items())
    for name, path, meta in entries:
        digest.update(f"\0tensor\0{name}\0{meta['dtype']}\0{meta['shape']}\0".encode())
        _hash_range(digest, path, meta["data_offsets"])
    return digest.hexdigest()


def _header(path: Path) -> dict[str, dict[str, Any]]:
    """name -> {dtype, shape, data_offsets (absolute file offsets)} for one safetensors file."""
    try:
        with path.open("rb") as fh:
            (size,) = struct.unpack("<Q", _read_exact(fh, 8, path))
            if size > _MAX_HEADER:
                raise ModelSourceError(f"{path}: safetensors header of {size} bytes is implausible")
            header = json.loads(_read_exact(fh, size, path))
    except (OSError, ValueError, struct.error) as exc:
        raise ModelSourceError(f"{path}: unreadable safetensors file: {exc}") from exc
    base = 8 + size
    out: dict[str, dict[str, Any]] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        out[name] = {
            "dtype": meta["dtype"],
            "shape": list(meta["shape"]),
            "data_offsets": (base + start, base + end),
        }
    return out


def _read_exact(fh: BinaryIO, n: int, path: Path) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise ModelSourceError(f"{path}: truncated safetensors file")
    return data


def _hash_range(digest: Any, path: Path, offsets: tuple[int, int]) -> None:
    start, end = offsets
    with path.open("rb") as fh:
        fh.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = fh.read(min(_CHUNK, remaining))
            if not chunk:
                raise ModelSourceError(f"{path}: truncated safetensors data")
            digest.update(chunk)
            remaining -= len(chunk)
