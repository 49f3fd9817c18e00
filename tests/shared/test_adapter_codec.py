"""Adapter transport encoding: only LoRA-carrying layers stored, float16/int8/int4 round trips, and
every inconsistency in a stored artifact refused as corrupt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.adapter_codec import BLOCK, decode, encode, quantize, stored_pairs
from shared.adapters import manifest_path, read_adapter, write_adapter
from shared.errors import AdapterCorrupt, AdapterNonFinite, AdapterShapeError
from tests.edge.model.test_adapter_files import LAYERS, make_manifest, make_spec, make_tensors

RANK = 4


def lora(d_in: int = 576, d_out: int = 192, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "lora_A.0.q_proj": rng.uniform(-0.05, 0.05, (d_in, RANK)).astype(np.float32),
        "lora_B.0.q_proj": (rng.standard_normal((RANK, d_out)) * 0.01).astype(np.float32),
    }


@pytest.mark.parametrize(("dtype", "tolerance"), [("float16", 1e-3), ("int8", 1 / 127), ("int4", 1 / 7)])
def test_round_trip_error_is_bounded_by_the_block_scale(dtype: str, tolerance: float) -> None:
    tensors = lora()
    back = decode(encode(tensors, dtype), dtype, "t")
    for name, value in tensors.items():
        assert back[name].shape == value.shape
        rows = value.T if name.startswith("lora_A") else value  # blocks run along the long axis
        err = np.abs((back[name].T if name.startswith("lora_A") else back[name]) - rows)
        for start in range(0, rows.shape[1], BLOCK):
            block = slice(start, start + BLOCK)
            absmax = np.abs(rows[:, block]).max(axis=1, keepdims=True)
            assert (err[:, block] <= absmax * tolerance * 0.51 + 1e-7).all()  # half a quantization step


@pytest.mark.parametrize("dtype", ["float16", "int8", "int4"])
def test_quantize_is_what_a_reader_decodes(dtype: str) -> None:
    once = quantize(lora(), dtype)
    assert all(np.array_equal(once[n], v) for n, v in quantize(once, dtype).items())


def test_stored_sizes_shrink_with_precision() -> None:
    tensors = lora()
    sizes = {d: sum(a.nbytes for a in encode(tensors, d).values()) for d in ("float32", "float16", "int8", "int4")}
    assert sizes["float32"] == 2 * sizes["float16"]
    assert sizes["int8"] < 0.55 * sizes["float16"]
    assert sizes["int4"] < 0.55 * sizes["int8"]


def test_zero_and_tiny_blocks_survive() -> None:
    tensors = {"lora_A.0.q_proj": np.zeros((128, RANK), np.float32)}
    tensors["lora_B.0.q_proj"] = np.zeros((RANK, 64), np.float32)
    tensors["lora_B.0.q_proj"][0, :3] = [1e-9, -2e-9, 0.0]
    back = quantize(tensors, "int8")
    assert np.isfinite(back["lora_B.0.q_proj"]).all()
    assert not back["lora_A.0.q_proj"].any()


def test_only_pairs_with_lora_are_worth_storing() -> None:
    tensors = make_tensors(rank=RANK)
    tensors["lora_A.0.q_proj"][:] = 0
    tensors["lora_B.0.q_proj"][:] = 0
    tensors["lora_B.1.v_proj"][:] = 0  # A alone is kept: it is still training state
    kept = set(stored_pairs(tensors))
    assert "lora_A.0.q_proj" not in kept and "lora_B.0.q_proj" not in kept
    assert {"lora_A.1.v_proj", "lora_B.1.v_proj", "lora_A.0.v_proj"} <= kept


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8", "int4"])
def test_artifact_keeps_only_trained_layers_and_reads_back_every_layer(tmp_path: Path, dtype: str) -> None:
    tensors = make_tensors(rank=RANK)
    for name in [n for n in tensors if ".0." in n]:
        tensors[name] = np.zeros_like(tensors[name])  # layer 0 untrained, as edge rounds leave lower layers
    path = tmp_path / "a.onnx_adapter"
    written = write_adapter(path, tensors, make_manifest(rank=RANK, dtype=dtype))
    assert written.layers == (1,)
    loaded = read_adapter(path, make_spec())
    assert loaded.manifest.layers == (1,) and loaded.manifest.dtype == dtype
    assert set(loaded.tensors) == set(tensors)
    assert not loaded.tensors["lora_A.0.q_proj"].any() and not loaded.tensors["lora_B.0.v_proj"].any()
    expected = quantize(tensors, dtype)
    for name, value in loaded.tensors.items():
        assert value.dtype == (np.float16 if dtype == "float16" else np.float32)
        np.testing.assert_array_equal(value, expected[name])


def test_every_layer_trained_writes_no_layer_list(tmp_path: Path) -> None:
    path = tmp_path / "a.onnx_adapter"
    assert write_adapter(path, make_tensors(rank=RANK), make_manifest(rank=RANK)).layers is None
    assert len(read_adapter(path, make_spec()).tensors) == 2 * 2 * LAYERS


def _rewrite_manifest(path: Path, **changes: object) -> None:
    doc = json.loads(manifest_path(path).read_text())
    doc.update(changes)
    manifest_path(path).write_text(json.dumps(doc))


def test_manifest_layers_that_disagree_with_the_artifact_are_refused(tmp_path: Path) -> None:
    tensors = make_tensors(rank=RANK)
    for name in [n for n in tensors if ".0." in n]:
        tensors[name] = np.zeros_like(tensors[name])
    path = tmp_path / "a.onnx_adapter"
    write_adapter(path, tensors, make_manifest(rank=RANK))
    _rewrite_manifest(path, layers=[0, 1])
    with pytest.raises(AdapterShapeError, match="missing tensors"):
        read_adapter(path, make_spec())
    _rewrite_manifest(path, layers=[1, 7])
    with pytest.raises(AdapterShapeError, match="beyond the base"):
        read_adapter(path, make_spec())
    for bad in ([1, 1], [-1], [True], "1"):
        _rewrite_manifest(path, layers=bad)
        with pytest.raises(AdapterCorrupt):
            read_adapter(path, make_spec())


def test_a_quantized_artifact_with_a_lying_dtype_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "a.onnx_adapter"
    write_adapter(path, make_tensors(rank=RANK), make_manifest(rank=RANK, dtype="int8"))
    for lie in ("int4", "float16", "float32"):  # the stored shapes or dtypes give every lie away
        _rewrite_manifest(path, dtype=lie)
        with pytest.raises((AdapterCorrupt, AdapterShapeError)):
            read_adapter(path, make_spec())


@pytest.mark.parametrize(
    "damage",
    ["drop_scale", "orphan_scale", "scale_shape", "scale_dtype", "codes_dtype", "codes_range"],
)
def test_inconsistent_quantized_arrays_are_corrupt(damage: str) -> None:
    arrays = encode(lora(d_in=128, d_out=64), "int8")
    name = "lora_B.0.q_proj"
    if damage == "drop_scale":
        del arrays[name + ".scale"]
    elif damage == "orphan_scale":
        arrays["lora_B.9.q_proj.scale"] = arrays[name + ".scale"]
    elif damage == "scale_shape":
        arrays[name + ".scale"] = arrays[name + ".scale"][:1]
    elif damage == "scale_dtype":
        arrays[name + ".scale"] = arrays[name + ".scale"].astype(np.float16)
    elif damage == "codes_dtype":
        arrays[name] = arrays[name].astype(np.int16)
    else:
        arrays[name] = arrays[name].copy()
        arrays[name][0, 0] = -128
    with pytest.raises(AdapterCorrupt):
        decode(arrays, "int8", "t")


def test_int4_needs_an_even_width() -> None:
    with pytest.raises(AdapterShapeError, match="even width"):
        encode({"lora_B.0.q_proj": np.ones((RANK, 5), np.float32)}, "int4")


def test_tiny_and_huge_blocks_keep_their_precision() -> None:
    rng = np.random.default_rng(1)
    for magnitude in (1e-9, 1e-6, 1.0, 1e6):
        tensors = {"lora_B.0.q_proj": (rng.standard_normal((RANK, 128)) * magnitude).astype(np.float32)}
        for dtype, step in (("int8", 1 / 127), ("int4", 1 / 7)):
            back = quantize(tensors, dtype)["lora_B.0.q_proj"]
            err = np.abs(back - tensors["lora_B.0.q_proj"]).max() / np.abs(tensors["lora_B.0.q_proj"]).max()
            assert np.isfinite(back).all() and err <= step * 0.51, (magnitude, dtype, err)


def test_a_hostile_artifact_is_refused_by_shape_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "a.onnx_adapter"
    tensors = make_tensors(rank=RANK)
    write_adapter(path, tensors, make_manifest(rank=RANK, dtype="int8"))
    import onnxruntime as ort

    huge = {
        "lora_A.0.q_proj": np.zeros((RANK, 1 << 20), np.int8),
        "lora_A.0.q_proj.scale": np.ones((RANK, 1 << 14), np.float32),
    }
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(3)
    fmt.set_model_version(1)
    fmt.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in huge.items()})
    fmt.export_adapter(str(path))
    import hashlib

    _rewrite_manifest(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), layers=[0])
    with pytest.raises(AdapterShapeError, match=r"missing tensors|expected"):
        read_adapter(path, make_spec())


def test_float16_overflow_is_refused_at_write(tmp_path: Path) -> None:
    tensors = make_tensors(rank=RANK)
    tensors["lora_B.1.q_proj"][0, 0] = 1e6
    with pytest.raises(AdapterNonFinite):
        write_adapter(tmp_path / "a.onnx_adapter", tensors, make_manifest(rank=RANK, dtype="float16"))
