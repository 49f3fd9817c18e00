"""Test harness: a real gateway (CURVE keys, tenants, SQLite, the tiny model) on 127.0.0.1.

Importable from every test module (``pythonpath = ["tests/support"]`` in pyproject). Used by gateway, edge
and end-to-end tests alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import gateway_toml, write_keys
from benchmarks.harness import until as until  # re-exported: the tests import it from here
from edge.client import ClientKeys
from gateway.service import GatewayService
from shared.config import GatewayConfig, parse_config

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
