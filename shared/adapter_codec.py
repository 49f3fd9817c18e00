"""How an adapter's LoRA tensors are stored in an ``.onnx_adapter`` file: the transport encoding.

In memory an adapter is always float (``A [d_in, r]``, ``B [r, d_out]`` for every layer). On disk and
on the wire it is smaller, because the artifact is what a device uploads over its daily data budget:

* **Only layers that carry LoRA.** Edge rounds train the top layers only; a (layer, module) pair whose
  A and B are both all-zero contributes nothing and is left out. The manifest's ``layers`` lists the
  layers stored; the reader puts zeros back for the rest.
* **Precision** (the manifest's ``dtype``): ``float32``, ``float16``, or symmetric block quantization
  ``int8`` / ``int4``. A quantized tensor is stored rank-major (``[r, long]``, where ``long`` is d_in for
  A and d_out for B) as int8, or as two int4 nibbles per uint8 byte, plus one float32 scale per block
  of :data:`BLOCK` values (``<name>.scale``, ``[r, ceil(long / BLOCK)]``; float32, because float16
  scales underflow for the small blocks LoRA has and overflow for large ones). Rank-major blocks give each LoRA
  direction its own scales, which matters because B's rows and A's columns differ in magnitude.

:func:`quantize` rounds float tensors to exactly the values the reader will decode, so an eval gate
that scores ``quantize(x)`` scores what the gateway will serve. Decoding checks the stored structure
and raises :class:`~shared.errors.AdapterCorrupt` on anything inconsistent; :func:`stored_shapes` says
what shapes an artifact must hold, so a reader can refuse a hostile file before decoding anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.errors import AdapterCorrupt, AdapterShapeError

Array = npt.NDArray[Any]

FLOAT_DTYPES = ("float32", "float16")
QUANT_BITS = {"int8": 8, "int4": 4}
STORED_DTYPES = FLOAT_DTYPES + tuple(QUANT_BITS)
BLOCK = 64  # values per scale along the long axis (the last block may be shorter)
SCALE_SUFFIX = ".scale"


def memory_dtype(stored: str) -> str:
    """The dtype of the decoded tensors: quantized artifacts decode to float32."""
    return stored if stored in FLOAT_DTYPES else "float32"


def is_rank_major(name: str) -> bool:
    """A [d_in, r] is transposed to rank-major for blocking; B [r, d_out] already is."""
    return name.startswith("lora_A.")


def stored_pairs(tensors: Mapping[str, Array]) -> list[str]:
    """Names worth storing: both halves of every (layer, module) pair that has a non-zero A or B."""
    keep: list[str] = []
    for name, value in tensors.items():
        if not name.startswith("lora_A."):
            continue
        partner = "lora_B." + name.removeprefix("lora_A.")
        if np.any(value) or (partner in tensors and np.any(tensors[partner])):
            keep += [name, partner]
    return keep


def stored_shapes(name: str, shape: tuple[int, int], stored: str) -> dict[str, tuple[int, int]]:
    """The arrays (name -> shape) an artifact holds for one in-memory tensor of ``shape``."""
    if stored in FLOAT_DTYPES:
        return {name: shape}
    rank, long = (shape[1], shape[0]) if is_rank_major(name) else shape
    width = long // 2 if QUANT_BITS.get(stored) == 4 else long
    return {name: (rank, width), name + SCALE_SUFFIX: (rank, -(-long // BLOCK))}


def encode(tensors: Mapping[str, Array], stored: str) -> dict[str, Array]:
    """Float tensors -> the arrays written into the artifact for ``stored`` precision."""
    if stored in FLOAT_DTYPES:
        with np.errstate(over="ignore"):  # beyond float16's range becomes inf: write_adapter refuses it
            return {name: np.ascontiguousarray(value, dtype=stored) for name, value in tensors.items()}
    bits = QUANT_BITS[stored]
    out: dict[str, Array] = {}
    for name, value in tensors.items():
        rows = _rank_major(name, np.asarray(value, dtype=np.float32))
        q, scale = _quantize_rows(rows, bits)
        out[name] = _pack4(name, q) if bits == 4 else q
        out[name + SCALE_SUFFIX] = scale
    return out


def decode(arrays: Mapping[str, Array], stored: str, where: str) -> dict[str, Array]:
    """Artifact arrays -> float tensors in the in-memory layout; AdapterCorrupt when inconsistent."""
    if stored in FLOAT_DTYPES:
        bad = sorted(n for n, v in arrays.items() if str(v.dtype) != stored)
        if bad:
            raise AdapterCorrupt(f"{where}: tensors {bad[:4]} are not {stored} as the manifest says")
        return dict(arrays)
    if stored not in QUANT_BITS:
        raise AdapterCorrupt(f"{where}: unknown stored dtype {stored!r}")
    bits = QUANT_BITS[stored]
    out: dict[str, Array] = {}
    for name, data in arrays.items():
        if name.endswith(SCALE_SUFFIX):
            if name.removesuffix(SCALE_SUFFIX) not in arrays:
                raise AdapterCorrupt(f"{where}: scale {name} has no tensor")
            continue
        scale = arrays.get(name + SCALE_SUFFIX)
        if scale is None:
            raise AdapterCorrupt(f"{where}: quantized tensor {name} has no {name + SCALE_SUFFIX}")
        rows = _dequantize_rows(name, data, scale, bits, where)
        out[name] = np.ascontiguousarray(rows.T if is_rank_major(name) else rows)
    return out


def quantize(tensors: Mapping[str, Array], stored: str) -> dict[str, Array]:
    """``decode(encode(tensors))``: the values a reader of a ``stored`` artifact will get."""
    return decode(encode(tensors, stored), stored, "quantize")


def _rank_major(name: str, value: Array) -> Array:
    return np.ascontiguousarray(value.T if is_rank_major(name) else value)


def _quantize_rows(rows: Array, bits: int) -> tuple[Array, Array]:
    """rows [r, n] -> (int8 codes [r, n], float32 scales [r, ceil(n / BLOCK)])."""
    qmax = (1 << (bits - 1)) - 1
    r, n = rows.shape
    blocks = -(-n // BLOCK)
    padded = np.zeros((r, blocks * BLOCK), np.float32)
    padded[:, :n] = rows
    grouped = padded.reshape(r, blocks, BLOCK)
    scale = (np.abs(grouped).max(axis=2) / np.float32(qmax)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1.0))
    codes = np.clip(np.rint(grouped / safe[:, :, None]), -qmax, qmax).astype(np.int8)
    return codes.reshape(r, blocks * BLOCK)[:, :n], scale


def _dequantize_rows(name: str, data: Array, scale: Array, bits: int, where: str) -> Array:
    if scale.dtype != np.float32 or scale.ndim != 2 or data.ndim != 2:
        raise AdapterCorrupt(f"{where}: {name}: quantized layout must be 2-D codes with 2-D float32 scales")
    if bits == 4:
        if data.dtype != np.uint8:
            raise AdapterCorrupt(f"{where}: {name}: int4 codes must be packed uint8, found {data.dtype}")
        codes = _unpack4(data)
    elif data.dtype != np.int8:
        raise AdapterCorrupt(f"{where}: {name}: int8 codes must be int8, found {data.dtype}")
    else:
        codes = data
    r, n = codes.shape
    if scale.shape != (r, -(-n // BLOCK)):
        raise AdapterCorrupt(f"{where}: {name}: scales {tuple(scale.shape)} do not fit codes {tuple(codes.shape)}")
    qmax = (1 << (bits - 1)) - 1
    if np.any(np.abs(codes.astype(np.int16)) > qmax):
        raise AdapterCorrupt(f"{where}: {name}: codes outside ±{qmax}")
    if not np.isfinite(scale).all() or (scale < 0).any():
        raise AdapterCorrupt(f"{where}: {name}: scales must be finite and non-negative")
    per_value = np.repeat(scale, BLOCK, axis=1)[:, :n]
    rows: Array = codes.astype(np.float32) * per_value
    return rows


def _pack4(name: str, codes: Array) -> Array:
    """int8 codes in [-7, 7], [r, n] with n even -> uint8 [r, n / 2] (low nibble first, offset by 8)."""
    if codes.shape[1] % 2:
        raise AdapterShapeError(f"{name}: int4 storage needs an even width, has {codes.shape[1]}")
    nib = (codes.astype(np.int16) + 8).astype(np.uint8)
    return np.ascontiguousarray(nib[:, 0::2] | (nib[:, 1::2] << 4))


def _unpack4(packed: Array) -> Array:
    """The inverse of :func:`_pack4`."""
    low = (packed & 0x0F).astype(np.int8) - 8
    high = (packed >> 4).astype(np.int8) - 8
    out = np.empty((packed.shape[0], packed.shape[1] * 2), np.int8)
    out[:, 0::2], out[:, 1::2] = low, high
    return out
