"""LoRA adapter artifacts: ``<name>.onnx_adapter`` + ``<name>.manifest.json``, and PEFT conversion.

The artifact is ONNX Runtime's adapter format (``onnxruntime.AdapterFormat``: named tensors, no
hash, rank or base binding), holding for every layer i and target module m::

    lora_A.{i}.{m}   [d_in, r]    (PEFT stores lora_A.weight as [r, d_in]: transposed here)
    lora_B.{i}.{m}   [r, d_out]   (PEFT: lora_B.weight [d_out, r]); unscaled, scale = alpha / r

The manifest beside it carries what the format lacks: twin, version, base fingerprint, rank, alpha,
targets, the stored dtype and layers, the artifact's sha256, creation time and a free-form training summary.
How the tensors are stored (only layers that carry LoRA; float32/float16 or block-quantized int8/int4)
is :mod:`shared.adapter_codec`'s job; in memory (:class:`LoadedAdapter`) an adapter is always float and
has every layer.

:func:`read_adapter` checks, in order, and raises the matching :class:`~shared.errors.AdapterError`:
manifest JSON/schema and artifact structure (AdapterCorrupt), sha256 (AdapterHashMismatch), base
fingerprint (AdapterBaseMismatch), rank/targets/layers/shapes/dtype (AdapterShapeError), NaN/inf
(AdapterNonFinite). onnxruntime and safetensors are imported lazily; numpy is the only heavy import.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.adapter_codec import STORED_DTYPES, decode, encode, memory_dtype, stored_pairs, stored_shapes
from shared.errors import (
    AdapterBaseMismatch,
    AdapterCorrupt,
    AdapterHashMismatch,
    AdapterNonFinite,
    AdapterShapeError,
)
from shared.files import atomic_write_bytes
from shared.modelspec import SHA256_HEX, ModelSpec, lora_a_name, lora_b_name

ARTIFACT_SUFFIX = ".onnx_adapter"
MANIFEST_SUFFIX = ".manifest.json"
_MAX_MANIFEST_BYTES = 1 << 20
_TENSOR_NAME = re.compile(r"lora_([AB])\.(\d+)\.([A-Za-z_][A-Za-z0-9_]*)")
_PEFT_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:[\w.]+\.)?(\w+)\.lora_(A|B)(?:\.\w+)?\.weight$")

Array = npt.NDArray[Any]
_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "twin_id": str, "version": int, "base_fingerprint": str, "rank": int, "alpha": (int, float),
    "target_modules": list, "dtype": str, "layers": (list, type(None)), "sha256": str, "created": str,
    "training": dict,
}  # fmt: skip
_MANIFEST_DEFAULTS: dict[str, Any] = {
    "dtype": "float32", "layers": None, "sha256": "", "created": "", "training": {},
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class AdapterManifest:
    """The JSON document beside an artifact. ``sha256`` is filled in by :func:`write_adapter`."""

    twin_id: str
    version: int
    base_fingerprint: str
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    dtype: str = "float32"  # as stored in the artifact (shared.adapter_codec.STORED_DTYPES)
    layers: tuple[int, ...] | None = None  # the layers stored in the artifact; None: every layer
    sha256: str = ""
    created: str = ""
    training: Mapping[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_json(self) -> str:
        doc = {k: getattr(self, k) for k in self.__dataclass_fields__}
        doc["target_modules"] = list(self.target_modules)
        if self.layers is None:  # every layer stored: the manifest older readers know
            del doc["layers"]
        else:
            doc["layers"] = list(self.layers)
        doc["training"] = dict(self.training)
        return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> AdapterManifest:
        try:
            doc = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise AdapterCorrupt(f"{where}: manifest is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise AdapterCorrupt(f"{where}: manifest must be a JSON object")
        unknown = set(doc) - set(cls.__dataclass_fields__)
        if unknown:
            raise AdapterCorrupt(f"{where}: unknown manifest keys {sorted(unknown)}")
        values = {key: _field(doc, key, kind, where) for key, kind in _MANIFEST_TYPES.items()}
        values["alpha"], values["target_modules"] = float(values["alpha"]), tuple(values["target_modules"])
        if values["layers"] is not None:
            values["layers"] = tuple(values["layers"])
        manifest = cls(**values)
        manifest.check(where)
        return manifest

    def check(self, where: str) -> None:
        """Field-level rules (AdapterCorrupt): what any reader can verify without the base model."""
        problems = []
        if not 1 <= len(self.twin_id) <= 128:
            problems.append("twin_id must be 1..128 characters")
        if not 0 <= self.version < 2**31:
            problems.append("version must be in [0, 2^31)")
        if re.fullmatch(SHA256_HEX, self.base_fingerprint) is None:
            problems.append("base_fingerprint must be 64 lowercase hex digits")
        if not 1 <= self.rank <= 4096:
            problems.append("rank must be in [1, 4096]")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            problems.append("alpha must be a finite number > 0")
        if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
            problems.append("target_modules must be a non-empty list of names")
        if self.dtype not in STORED_DTYPES:
            problems.append(f"dtype must be one of {STORED_DTYPES}")
        if self.layers is not None and not _ascending_layers(self.layers):
            problems.append("layers must be distinct layer numbers in [0, 4096), ascending")
        if self.sha256 and re.fullmatch(SHA256_HEX, self.sha256) is None:
            problems.append("sha256 must be 64 lowercase hex digits")
        if problems:
            raise AdapterCorrupt(f"{where}: invalid manifest: {'; '.join(problems)}")


@dataclass(frozen=True, slots=True)
class LoadedAdapter:
    """A verified adapter in memory: tensors as in the artifact (unscaled, A [d_in, r], B [r, d_out])."""

    manifest: AdapterManifest
    tensors: Mapping[str, Array]

    def bank_rows(self, layer: int, module: str, max_rank: int) -> tuple[Array, Array]:
        """float32 (A [d_in, max_rank], B [max_rank, d_out] * alpha/r): rank zero-padded, scale folded.

        Zero rows/columns beyond r contribute nothing to (x @ A) @ B, so any r <= max_rank fits a slot.
        """
        a = self.tensors[lora_a_name(layer, module)].astype(np.float32)
        b = self.tensors[lora_b_name(layer, module)].astype(np.float32) * np.float32(self.manifest.scale)
        r = a.shape[1]
        a_pad = np.zeros((a.shape[0], max_rank), np.float32)
        b_pad = np.zeros((max_rank, b.shape[1]), np.float32)
        a_pad[:, :r] = a
        b_pad[:r, :] = b
        return a_pad, b_pad


def manifest_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name.removesuffix(ARTIFACT_SUFFIX) + MANIFEST_SUFFIX)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_adapter(path: Path, tensors: Mapping[str, Array], manifest: AdapterManifest) -> AdapterManifest:
    """Write artifact then manifest, each atomically (temp file, fsync, os.replace). Returns the
    manifest as written (layers, sha256 and, if empty, created filled in).

    ``tensors`` are float, every layer; they are stored in ``manifest.dtype`` and only the layers that
    carry LoRA are kept (see :mod:`shared.adapter_codec`)."""
    import onnxruntime as ort

    where = str(path)
    manifest.check(where)
    _check_tensors(tensors, manifest, None, where, in_memory_dtype=False)
    keep = _stored_names(tensors)
    layers = tuple(sorted({_layer_of(name) for name in keep}))
    manifest = replace(manifest, layers=layers if len(keep) < len(tensors) else None)
    stored = encode({name: tensors[name] for name in keep}, manifest.dtype)
    for name, value in stored.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():  # e.g. beyond float16's range
            raise AdapterNonFinite(f"{where}: {name} is not finite once stored as {manifest.dtype}")
    values = {k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)) for k, v in stored.items()}
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(manifest.version)
    fmt.set_model_version(1)
    fmt.set_parameters(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fmt.export_adapter(tmp)
        data = Path(tmp).read_bytes()
        _fsync_file(tmp)
        written = replace(
            manifest, sha256=hashlib.sha256(data).hexdigest(), created=manifest.created or utc_now()
        )
        os.replace(tmp, path)
        atomic_write_bytes(manifest_path(path), written.to_json().encode())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written


def read_adapter(path: Path, spec: ModelSpec) -> LoadedAdapter:
    """Load and verify an artifact + manifest against a prepared base model."""
    where = str(path)
    mpath = manifest_path(path)
    try:
        raw = mpath.read_bytes()[: _MAX_MANIFEST_BYTES + 1]
        data = path.read_bytes()
    except OSError as exc:
        raise AdapterCorrupt(f"{where}: cannot read artifact or manifest: {exc.strerror}") from exc
    if len(raw) > _MAX_MANIFEST_BYTES:
        raise AdapterCorrupt(f"{mpath}: manifest larger than {_MAX_MANIFEST_BYTES} bytes")
    manifest = AdapterManifest.from_json(raw, str(mpath))
    arrays = _parse_artifact(path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.sha256:
        raise AdapterHashMismatch(
            f"{where}: sha256 {digest[:16]}... differs from the manifest's {manifest.sha256[:16]}..."
        )
    if manifest.base_fingerprint != spec.fingerprint:
        raise AdapterBaseMismatch(
            f"{where}: trained for base {manifest.base_fingerprint[:12]}, "
            f"this model is {spec.fingerprint[:12]} ({spec.name})"
        )
    _check_stored_arrays(arrays, manifest, spec, where)  # names and shapes before any decoding
    tensors = _with_empty_layers(decode(arrays, manifest.dtype, where), manifest, spec)
    _check_tensors(tensors, manifest, spec, where)
    return LoadedAdapter(manifest, tensors)


def _stored_names(tensors: Mapping[str, Array]) -> list[str]:
    """Every tensor of the layers that carry LoRA (whole layers: all targets of a kept layer)."""
    layers = {_layer_of(name) for name in stored_pairs(tensors)}
    if not layers:  # an all-zero adapter: store it whole rather than as an empty file
        return list(tensors)
    return [name for name in tensors if _layer_of(name) in layers]


def _layer_of(name: str) -> int:
    match = _TENSOR_NAME.fullmatch(name)
    return -1 if match is None else int(match.group(2))


def _check_stored_arrays(arrays: Mapping[str, Array], manifest: AdapterManifest, spec: ModelSpec, where: str) -> None:
    """Rank and targets fit the base; the artifact holds exactly the arrays of the manifest's layers (all
    targets each) in the shapes its dtype stores them: a hostile file is refused before it is decoded."""
    _check_fits_base(manifest, spec, where)
    layers = range(spec.n_layers) if manifest.layers is None else manifest.layers
    beyond = [layer for layer in layers if layer >= spec.n_layers]
    if beyond:
        raise AdapterShapeError(f"{where}: layers {beyond[:4]} beyond the base model's {spec.n_layers}")
    expected: dict[str, tuple[int, int]] = {}
    for layer in layers:
        for module in manifest.target_modules:
            d_in, d_out = spec.target_shape(module)
            expected |= stored_shapes(lora_a_name(layer, module), (d_in, manifest.rank), manifest.dtype)
            expected |= stored_shapes(lora_b_name(layer, module), (manifest.rank, d_out), manifest.dtype)
    missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if missing or extra:
        raise AdapterShapeError(f"{where}: missing tensors {missing[:4]}, unexpected tensors {extra[:4]}")
    for name, shape in expected.items():
        if tuple(arrays[name].shape) != shape:
            raise AdapterShapeError(f"{where}: {name} has shape {tuple(arrays[name].shape)}, expected {shape}")


def _check_fits_base(manifest: AdapterManifest, spec: ModelSpec, where: str) -> None:
    if manifest.rank > spec.max_rank:
        raise AdapterShapeError(f"{where}: rank {manifest.rank} exceeds the engine's max_rank {spec.max_rank}")
    unknown = sorted(set(manifest.target_modules) - set(spec.targets))
    if unknown:
        raise AdapterShapeError(f"{where}: target modules {unknown} are not LoRA targets of {spec.name}")


def _check_names(
    tensors: Mapping[str, Array], layers: Iterable[int], manifest: AdapterManifest, where: str
) -> None:
    expected = {n for i in layers for m in manifest.target_modules for n in (lora_a_name(i, m), lora_b_name(i, m))}
    missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or extra:
        raise AdapterShapeError(f"{where}: missing tensors {missing[:4]}, unexpected tensors {extra[:4]}")


def _with_empty_layers(stored: Mapping[str, Array], manifest: AdapterManifest, spec: ModelSpec) -> dict[str, Array]:
    """The in-memory layout: the stored layers plus zero A and B for every layer not stored."""
    tensors = dict(stored)
    dtype = memory_dtype(manifest.dtype)
    for layer in range(spec.n_layers):
        for module in manifest.target_modules:
            d_in, d_out = spec.target_shape(module)
            tensors.setdefault(lora_a_name(layer, module), np.zeros((d_in, manifest.rank), dtype))
            tensors.setdefault(lora_b_name(layer, module), np.zeros((manifest.rank, d_out), dtype))
    return tensors


def _ascending_layers(layers: tuple[int, ...]) -> bool:
    ok = all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 4096 for i in layers)
    return ok and all(a < b for a, b in itertools.pairwise(layers))


def _parse_artifact(path: Path) -> dict[str, Array]:
    import onnxruntime as ort

    try:
        fmt = ort.AdapterFormat.read_adapter(str(path))
        # copy out: the read instance's OrtValues are views into ORT-owned memory
        return {name: np.array(value.numpy()) for name, value in fmt.get_parameters().items()}
    except (RuntimeError, ValueError) as exc:
        raise AdapterCorrupt(f"{path}: not a valid .onnx_adapter file: {exc}") from exc


def _check_tensors(
    tensors: Mapping[str, Array],
    manifest: AdapterManifest,
    spec: ModelSpec | None,
    where: str,
    *,
    in_memory_dtype: bool = True,
) -> None:
    """Names, pairing, shapes, dtype and finiteness; against the base model's layout when spec is given.

    ``in_memory_dtype``: the tensors are decoded ones (quantized artifacts decode to float32); when False
    (tensors about to be written) any float dtype is accepted, since writing converts."""
    if spec is not None:
        _check_fits_base(manifest, spec, where)
        _check_names(tensors, range(spec.n_layers), manifest, where)
    dtype = memory_dtype(manifest.dtype) if in_memory_dtype else None
    for name, value in tensors.items():
        _check_one(name, value, manifest, spec, tensors, where, dtype)


def _check_one(
    name: str,
    value: Array,
    manifest: AdapterManifest,
    spec: ModelSpec | None,
    tensors: Mapping[str, Array],
    where: str,
    dtype: str | None,
) -> None:
    match = _TENSOR_NAME.fullmatch(name)
    if match is None or match.group(3) not in manifest.target_modules:
        raise AdapterShapeError(
            f"{where}: unexpected tensor {name!r} for targets {list(manifest.target_modules)}"
        )
    kind, layer, module = match.group(1), int(match.group(2)), match.group(3)
    partner = (lora_b_name if kind == "A" else lora_a_name)(layer, module)
    if partner not in tensors:
        raise AdapterShapeError(f"{where}: {name} has no matching {partner}")
    if dtype is not None and str(value.dtype) != dtype:
        raise AdapterShapeError(f"{where}: {name} is {value.dtype}, manifest says {manifest.dtype}")
    if dtype is None and value.dtype.kind != "f":
        raise AdapterShapeError(f"{where}: {name} is {value.dtype}, adapters are written from float tensors")
    if value.ndim != 2:
        raise AdapterShapeError(f"{where}: {name} must be 2-D, has shape {tuple(value.shape)}")
    if spec is not None:
        d_in, d_out = spec.target_shape(module)
        want = (d_in, manifest.rank) if kind == "A" else (manifest.rank, d_out)
    else:  # without the base model only the rank side can be checked
        want = (value.shape[0], manifest.rank) if kind == "A" else (manifest.rank, value.shape[1])
    if tuple(value.shape) != want:
        raise AdapterShapeError(f"{where}: {name} has shape {tuple(value.shape)}, expected {want}")
    if not np.isfinite(value).all():
        raise AdapterNonFinite(f"{where}: {name} holds NaN or infinite values")


# ------------------------------------------------------------------------------------------------
# PEFT on-disk format (adapter_config.json + adapter_model.safetensors), via safetensors.numpy


def import_peft(
    peft_dir: Path, spec: ModelSpec, *, twin_id: str, version: int, training: Mapping[str, Any] | None = None
) -> tuple[dict[str, Array], AdapterManifest]:
    """Tensors + manifest (sha256 empty until written) from a PEFT LoRA directory for this base."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    where = str(peft_dir)
    config = _peft_config(peft_dir)
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    if config.get("use_rslora"):  # scale alpha / sqrt(r): store the alpha that gives it as alpha / r
        alpha = alpha * math.sqrt(rank)
    try:
        raw = load_file(str(peft_dir / "adapter_model.safetensors"))
    except (OSError, SafetensorError) as exc:
        raise AdapterCorrupt(f"{where}: cannot read adapter_model.safetensors: {exc}") from exc
    tensors: dict[str, Array] = {}
    for key, value in raw.items():
        match = _PEFT_KEY.search(key)
        if match is None:
            raise AdapterShapeError(f"{where}: unsupported tensor {key!r} (only LoRA A/B weights are)")
        layer, module, kind = int(match.group(1)), match.group(2), match.group(3)
        # PEFT: A [r, d_in], B [d_out, r] (nn.Linear layout); ours: A [d_in, r], B [r, d_out]
        name = (lora_a_name if kind == "A" else lora_b_name)(layer, module)
        tensors[name] = np.ascontiguousarray(value.T.astype(np.float32))
    modules = tuple(sorted({m.group(3) for m in map(_TENSOR_NAME.fullmatch, tensors) if m is not None}))
    manifest = AdapterManifest(
        twin_id=twin_id,
        version=version,
        base_fingerprint=spec.fingerprint,
        rank=rank,
        alpha=alpha,
        target_modules=modules,
        training=dict(training or {}),
    )
    manifest.check(where)
    _check_tensors(tensors, manifest, spec, where)
    return tensors, manifest


def export_peft(adapter: LoadedAdapter, spec: ModelSpec, out_dir: Path) -> None:
    """Write a PEFT LoRA directory that ``PeftModel.from_pretrained(base, out_dir)`` loads."""
    from safetensors.numpy import save_file

    man = adapter.manifest
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Array] = {}
    for name, value in adapter.tensors.items():
        match = _TENSOR_NAME.fullmatch(name)
        if match is None:
            raise AdapterShapeError(f"unexpected tensor {name!r}")
        kind, layer, module = match.group(1), int(match.group(2)), match.group(3)
        path = spec.module_paths[module].format(layer=layer)
        arrays[f"base_model.model.{path}.lora_{kind}.weight"] = np.ascontiguousarray(value.T)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": man.rank,
        "lora_alpha": man.alpha,
        "target_modules": sorted(man.target_modules),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "inference_mode": True,
        "base_model_name_or_path": None,
        "modules_to_save": None,
    }
    save_file(arrays, str(out_dir / "adapter_model.safetensors"))
    atomic_write_bytes(out_dir / "adapter_config.json", (json.dumps(config, indent=2) + "\n").encode())


def _peft_config(peft_dir: Path) -> dict[str, Any]:
    where = str(peft_dir / "adapter_config.json")
    try:
        config = json.loads((peft_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterCorrupt(f"{where}: unreadable: {exc}") from exc
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise AdapterCorrupt(f"{where}: not a PEFT LoRA config")
    if not isinstance(config.get("r"), int) or not isinstance(config.get("lora_alpha"), int | float):
        raise AdapterCorrupt(f"{where}: r and lora_alpha must be numbers")
    refused = {
        "use_dora": config.get("use_dora"),
        "fan_in_fan_out": config.get("fan_in_fan_out"),
        "rank_pattern": config.get("rank_pattern"),
        "alpha_pattern": config.get("alpha_pattern"),
    }
    if any(refused.values()) or config.get("bias", "none") != "none":
        used = sorted(k for k, v in refused.items() if v) + (
            ["bias"] if config.get("bias", "none") != "none" else []
        )
        raise AdapterShapeError(f"{where}: unsupported LoRA options {used} (plain LoRA with one rank only)")
    return config


def _field(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        if key in _MANIFEST_DEFAULTS:
            default = _MANIFEST_DEFAULTS[key]
            return dict(default) if isinstance(default, dict) else default  # never share the mutable one
        raise AdapterCorrupt(f"{where}: manifest misses {key!r}")
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise AdapterCorrupt(f"{where}: manifest {key!r} has the wrong type ({type(value).__name__})")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
