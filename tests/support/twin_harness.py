"""Test harness: a real gateway (CURVE keys, tenants, SQLite, the tiny model) on 127.0.0.1.

Importable from every test module (``pythonpath = ["tests/support"]`` in pyproject). Used by gateway, edge
and end-to-end tests alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tomllib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import gateway_toml, write_keys
from benchmarks.harness import until as until  # re-exported: the tests import it from here
from edge.client import ClientKeys, TwinClient
from gateway.service import GatewayService
from shared.adapters import AdapterManifest, manifest_path, write_adapter
from shared.config import GatewayConfig, parse_config
from shared.modelspec import ModelSpec, lora_a_name, lora_b_name
from shared.protocol import messages as m
from shared.protocol.results import UploadStatus

TENANTS = ("home1", "home2", "home3")


@dataclass
class Env:
    root: Path
    cfg: GatewayConfig
    keys: Path

    def client_keys(self, name: str) -> ClientKeys:
        return ClientKeys.from_files(self.keys / "server.key", self.keys / f"{name}.key_secret")


def make_env(root: Path, model_cache: Path, *, admission: str = "", bind: str = "tcp://127.0.0.1:*") -> Env:
    keys, tenants = root / "keys", root / "tenants"
    write_keys(keys, tenants, TENANTS, ["mallory"])
    text = gateway_toml(
        bind=bind, keys=keys, tenants_dir=tenants, data_dir=root / "data", cache_dir=model_cache, admin_port=0,
        drain_timeout_s=5.0, group=TENANTS, extra=admission,
    )  # fmt: skip
    path = root / "gateway.toml"
    path.write_text(text)
    cfg = parse_config(GatewayConfig, tomllib.loads(text), path)
    return Env(root, cfg, keys)


@contextlib.asynccontextmanager
async def running(cfg: GatewayConfig) -> AsyncIterator[GatewayService]:
    service = GatewayService(cfg, env={})
    task = asyncio.create_task(service.run())
    ready = asyncio.create_task(service.ready.wait())
    done, _ = await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()  # raises the startup error
    try:
        yield service
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 30)


def write_tiny_adapter(
    folder: Path, spec: ModelSpec, version: int, twin: str = "home1", training: Mapping[str, Any] | None = None
) -> Path:
    """A rank-4 adapter of small random weights for ``spec``'s model, with its manifest beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(version)
    tensors = {}
    for layer, module, _, _ in spec.bank_names():
        d_in, d_out = spec.target_shape(module)
        tensors[lora_a_name(layer, module)] = rng.normal(0, 0.02, (d_in, 4)).astype(np.float32)
        tensors[lora_b_name(layer, module)] = rng.normal(0, 0.02, (4, d_out)).astype(np.float32)
    manifest = AdapterManifest(twin, version, spec.fingerprint, 4, 8.0, spec.target_modules, training=training or {})
    path = folder / "a.onnx_adapter"
    write_adapter(path, tensors, manifest)
    return path


def adapter_upload(twin: str, version: int, artifact: Path) -> tuple[m.AdapterBegin, bytes]:
    """The begin message for uploading ``artifact`` (with its manifest), and the bytes to send."""
    data, manifest = artifact.read_bytes(), manifest_path(artifact).read_bytes()
    return m.AdapterBegin(twin, version, len(data), hashlib.sha256(data).hexdigest(), manifest), data


async def upload_adapter(client: TwinClient, begin: m.AdapterBegin, data: bytes) -> UploadStatus:
    """Upload in one chunk and commit: the gateway verifies and activates the version."""
    started = (await client.request(begin)).raise_for_error().result
    assert isinstance(started, UploadStatus)
    (await client.request(m.AdapterChunk(started.upload_id, 0, data))).raise_for_error()
    done = (await client.request(m.AdapterCommit(started.upload_id))).raise_for_error().result
    assert isinstance(done, UploadStatus) and done.complete
    return done
