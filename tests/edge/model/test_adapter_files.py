"""Adapter artifacts: write/read round trip, every typed error, PEFT on-disk format both ways."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from shared.adapters import (
    AdapterManifest,
    LoadedAdapter,
    export_peft,
    import_peft,
    manifest_path,
    read_adapter,
    write_adapter,
)
from shared.errors import (
    AdapterBaseMismatch,
    AdapterCorrupt,
    AdapterHashMismatch,
    AdapterNonFinite,
    AdapterShapeError,
)
from shared.modelspec import ModelSpec, Validation

FP = "ab" * 32
D_IN, D_Q, D_V, LAYERS = 8, 8, 4, 2


def make_spec(max_rank: int = 8) -> ModelSpec:
    return ModelSpec(
        name="unit",
        source="unit",
        fingerprint=FP,
        architecture="LlamaForCausalLM",
        model_type="llama",
        n_layers=LAYERS,
        n_heads=2,
        n_kv_heads=1,
        head_dim=4,
        hidden=D_IN,
        vocab=32,
        eos_token_ids=(2,),
        bos_token_id=1,
        has_chat_template=False,
        targets={"q_proj": (D_IN, D_Q), "v_proj": (D_IN, D_V)},
        module_paths={
            "q_proj": "model.layers.{layer}.self_attn.q_proj",
            "v_proj": "model.layers.{layer}.self_attn.v_proj",
        },
        max_rank=max_rank,
        bank_dtype="float32",
        input_names=("input_ids",),
        output_names=("logits",),
        validation=Validation(1e-3, 1e-3, 0.0, 0.0, 0.0, 0.0, 1.0),
        created="2025-01-01T00:00:00Z",
    )


def make_tensors(
    rank: int = 4, seed: int = 0, modules: tuple[str, ...] = ("q_proj", "v_proj"), dtype: type = np.float32
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for layer in range(LAYERS):
        for m in modules:
            d_out = D_Q if m == "q_proj" else D_V
            out[f"lora_A.{layer}.{m}"] = rng.standard_normal((D_IN, rank)).astype(dtype)
            out[f"lora_B.{layer}.{m}"] = rng.standard_normal((rank, d_out)).astype(dtype)
    return out


def make_manifest(rank: int = 4, **overrides: object) -> AdapterManifest:
    base = AdapterManifest(
        twin_id="home-1",
        version=3,
        base_fingerprint=FP,
        rank=rank,
        alpha=8.0,
        target_modules=("q_proj", "v_proj"),
        training={"steps": 10, "loss": [1.5, 0.9]},
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def written(tmp_path: Path) -> Path:
    path = tmp_path / "home-1.v3.onnx_adapter"
    write_adapter(path, make_tensors(), make_manifest())
    return path


def test_round_trip_keeps_tensors_and_manifest(written: Path) -> None:
    loaded = read_adapter(written, make_spec())
    for name, value in make_tensors().items():
        np.testing.assert_array_equal(loaded.tensors[name], value)
    man = loaded.manifest
    assert (man.twin_id, man.version, man.rank, man.alpha) == ("home-1", 3, 4, 8.0)
    assert man.training == {"steps": 10, "loss": [1.5, 0.9]}
    assert man.created.endswith("Z") and len(man.sha256) == 64
    assert manifest_path(written).name == "home-1.v3.manifest.json"
    assert not [p for p in written.parent.iterdir() if p.name.endswith(".tmp")]


def test_bank_rows_pad_rank_and_fold_scale() -> None:
    tensors = make_tensors(rank=4)
    adapter = LoadedAdapter(make_manifest(rank=4, alpha=6.0), tensors)
    a, b = adapter.bank_rows(1, "v_proj", 8)
    assert a.shape == (D_IN, 8) and b.shape == (8, D_V)
    np.testing.assert_array_equal(a[:, :4], tensors["lora_A.1.v_proj"])
    np.testing.assert_allclose(b[:4], tensors["lora_B.1.v_proj"] * 1.5, rtol=1e-6)
    assert not a[:, 4:].any() and not b[4:].any()


def _flip_a_weight_bit(path: Path) -> None:
    """Change one tensor value but keep the file structurally valid (what a bit rot would do)."""
    data = bytearray(path.read_bytes())
    at = bytes(data).find(make_tensors()["lora_B.0.v_proj"].tobytes())
    assert at > 0
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_hash_mismatch(written: Path) -> None:
    _flip_a_weight_bit(written)
    with pytest.raises(AdapterHashMismatch):
        read_adapter(written, make_spec())


def test_base_mismatch(written: Path) -> None:
    other = dataclasses.replace(make_spec(), fingerprint="cd" * 32)
    with pytest.raises(AdapterBaseMismatch):
        read_adapter(written, other)


def test_rank_above_max_rank(tmp_path: Path) -> None:
    path = tmp_path / "big.onnx_adapter"
    write_adapter(path, make_tensors(rank=16), make_manifest(rank=16))
    with pytest.raises(AdapterShapeError, match="max_rank"):
        read_adapter(path, make_spec(max_rank=8))


@pytest.mark.parametrize(
    "case", ["unknown_target", "missing_layer", "wrong_d_in", "wrong_d_out", "extra_layer"]
)
def test_shape_errors_against_the_base(tmp_path: Path, case: str) -> None:
    tensors = make_tensors()
    manifest = make_manifest()
    if case == "unknown_target":
        tensors = make_tensors(modules=("q_proj", "o_proj"))
        manifest = make_manifest(target_modules=("q_proj", "o_proj"))
    elif case == "missing_layer":
        del tensors["lora_A.1.q_proj"], tensors["lora_B.1.q_proj"]
    elif case == "wrong_d_in":
        tensors["lora_A.0.q_proj"] = np.zeros((D_IN + 1, 4), np.float32)
    elif case == "wrong_d_out":
        tensors["lora_B.0.v_proj"] = np.zeros((4, D_V + 2), np.float32)
    else:
        tensors["lora_A.5.q_proj"] = np.ones((D_IN, 4), np.float32)  # non-zero: an all-zero layer is not stored
        tensors["lora_B.5.q_proj"] = np.ones((4, D_Q), np.float32)
    path = tmp_path / f"{case}.onnx_adapter"
    write_adapter(path, tensors, manifest)
    with pytest.raises(AdapterShapeError):
        read_adapter(path, make_spec())


@pytest.mark.parametrize(
    "tensors",
    [
        {
            "lora_A.0.q_proj": np.zeros((D_IN, 3), np.float32),
            "lora_B.0.q_proj": np.zeros((4, D_Q), np.float32),
        },
        {"lora_A.0.q_proj": np.zeros((D_IN, 4), np.float32)},
        {
            "lora_A.0.q_proj": np.zeros((D_IN, 4), np.int32),  # any float is converted; integers are not LoRA
            "lora_B.0.q_proj": np.zeros((4, D_Q), np.int32),
        },
        {"weights": np.zeros((2, 2), np.float32)},
    ],
    ids=["rank_side", "unpaired", "dtype", "bad_name"],
)
def test_write_refuses_inconsistent_tensors(tmp_path: Path, tensors: dict[str, np.ndarray]) -> None:
    with pytest.raises(AdapterShapeError):
        write_adapter(tmp_path / "x.onnx_adapter", tensors, make_manifest())
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(tmp_path: Path, bad: float) -> None:
    tensors = make_tensors()
    tensors["lora_B.1.v_proj"][0, 0] = bad
    with pytest.raises(AdapterNonFinite):  # refused at write time ...
        write_adapter(tmp_path / "nan.onnx_adapter", tensors, make_manifest())
    good = tmp_path / "good.onnx_adapter"
    written = write_adapter(good, make_tensors(), make_manifest())
    # ... and at read time, for an artifact written by someone else with a matching hash
    import onnxruntime as ort

    fmt = ort.AdapterFormat()
    fmt.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in tensors.items()})
    fmt.export_adapter(str(good))
    import hashlib

    manifest = dataclasses.replace(written, sha256=hashlib.sha256(good.read_bytes()).hexdigest())
    manifest_path(good).write_text(manifest.to_json())
    with pytest.raises(AdapterNonFinite):
        read_adapter(good, make_spec())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_artifact(written: Path, damage: str) -> None:
    data = written.read_bytes()
    written.write_bytes(
        {"truncated": data[: len(data) // 3], "garbage": b"\x00garbage" * 50, "empty": b""}[damage]
    )
    with pytest.raises(AdapterCorrupt):
        read_adapter(written, make_spec())


@pytest.mark.parametrize(
    "manifest_text",
    [
        "{not json",
        "[]",
        '{"twin_id": "x"}',
        "NaN",
        "__valid_but_alpha_nan__",
        "__unknown_key__",
        "__rank_str__",
    ],
)
def test_corrupt_manifest(written: Path, manifest_text: str) -> None:
    doc = json.loads(manifest_path(written).read_text())
    if manifest_text == "__valid_but_alpha_nan__":
        manifest_text = json.dumps(doc).replace('"alpha": 8.0', '"alpha": NaN')
    elif manifest_text == "__unknown_key__":
        manifest_text = json.dumps({**doc, "surprise": 1})
    elif manifest_text == "__rank_str__":
        manifest_text = json.dumps({**doc, "rank": "4"})
    manifest_path(written).write_text(manifest_text)
    with pytest.raises(AdapterCorrupt):
        read_adapter(written, make_spec())


def test_missing_manifest(written: Path) -> None:
    manifest_path(written).unlink()
    with pytest.raises(AdapterCorrupt):
        read_adapter(written, make_spec())


def test_peft_round_trip(tmp_path: Path) -> None:
    spec = make_spec()
    adapter = LoadedAdapter(make_manifest(), make_tensors())
    export_peft(adapter, spec, tmp_path / "peft")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["target_modules"]) == (4, 8.0, ["q_proj", "v_proj"])
    from safetensors.numpy import load_file

    raw = load_file(str(tmp_path / "peft" / "adapter_model.safetensors"))
    key = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"
    np.testing.assert_array_equal(raw[key], adapter.tensors["lora_B.1.v_proj"].T)  # PEFT: [d_out, r]
    tensors, manifest = import_peft(tmp_path / "peft", spec, twin_id="home-1", version=4)
    assert (manifest.rank, manifest.alpha, manifest.version) == (4, 8.0, 4)
    for name, value in adapter.tensors.items():
        np.testing.assert_array_equal(tensors[name], value)


def test_peft_rslora_scale_is_kept(tmp_path: Path) -> None:
    spec = make_spec()
    export_peft(LoadedAdapter(make_manifest(), make_tensors()), spec, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    _, manifest = import_peft(tmp_path, spec, twin_id="t", version=0)
    assert manifest.scale == pytest.approx(8.0 / 2.0)  # alpha / sqrt(r)


@pytest.mark.parametrize(
    ("key", "value"), [("use_dora", True), ("bias", "all"), ("rank_pattern", {"q_proj": 2})]
)
def test_peft_unsupported_options(tmp_path: Path, key: str, value: object) -> None:
    spec = make_spec()
    export_peft(LoadedAdapter(make_manifest(), make_tensors()), spec, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(AdapterShapeError):
        import_peft(tmp_path, spec, twin_id="t", version=0)


def test_peft_missing_files(tmp_path: Path) -> None:
    with pytest.raises(AdapterCorrupt):
        import_peft(tmp_path, make_spec(), twin_id="t", version=0)
