"""Test harness: a real gateway (CURVE keys, tenants, SQLite, the tiny model) on 127.0.0.1.

Importable from every test module (``pythonpath = ["tests/support"]`` in pyproject). Used by gateway, edge
and end-to-end tests alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from edge.client import ClientKeys
from gateway.service import GatewayService
from shared.config import GatewayConfig, parse_config
from shared.keys import generate_keypair

TENANTS = ("home1", "home2", "home3")


@dataclass
class Env:
    root: Path
    cfg: GatewayConfig
    keys: Path

    def client_keys(self, name: str) -> ClientKeys:
        return ClientKeys.from_files(self.keys / "server.key", self.keys / f"{name}.key_secret")


def make_env(root: Path, model_cache: Path, *, admission: str = "", bind: str = "tcp://127.0.0.1:*") -> Env:
    keys = root / "keys"
    tenants = root / "tenants"
    tenants.mkdir(parents=True, exist_ok=True)
    generate_keypair(keys, "server")
    for name in (*TENANTS, "mallory"):
        generate_keypair(keys, name)
    for name in TENANTS:
        (tenants / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())
    text = f"""
[server]
bind = "{bind}"
server_secret_key = "{keys / "server.key_secret"}"
tenants_dir = "{tenants}"
drain_timeout_s = 5.0
[storage]
data_dir = "{root / "data"}"
[model]
base = "tiny"
cache_dir = "{model_cache}"
threads = 1
bank_slots = 8
[batching]
max_batch = 8
max_wait_ms = 5
[sharing]
groups = {{ street = ["home1", "home2", "home3"] }}
[admin]
port = 0
{admission}
"""
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


async def until(condition: Callable[[], bool], limit_s: float = 60.0, *, every_s: float = 0.01) -> None:
    """Wait for ``condition`` with a deadline: a condition wait for state that has no event to await
    (a row in another process's SQLite file, a counter in another component)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached in {limit_s} s")
        await asyncio.sleep(every_s)
