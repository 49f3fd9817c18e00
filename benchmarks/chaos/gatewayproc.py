"""A real gateway process for the chaos parts: keys, tenants, a fixed port, kill -9 and restart, RSS.

The faults, load and leak parts (and their tests) run the gateway the way users do
(``python -m shared gateway --config``), so a kill -9 is a real one: no drain, no ``finally``, the
SQLite WAL and the upload staging files left exactly as the kernel has them. The port is fixed in the
config so a restarted gateway is found by the clients that were connected to the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.finetune import prepared_model
from benchmarks.harness import free_port as free_port  # re-exported: the chaos parts import it from here
from benchmarks.harness import gateway_toml, write_keys
from benchmarks.harness import until as until  # re-exported: the chaos parts import it from here
from edge.client import ClientKeys
from edge.finetune.child import terminate
from shared.modelspec import default_cache_dir

START_LIMIT_S = 120.0
STOP_LIMIT_S = 30.0


def tiny_cache(cache_dir: Path | None) -> Path:
    """The model cache holding the prepared ``tiny`` base (prepared here if missing: seconds)."""
    cache = cache_dir or default_cache_dir(os.environ)
    prepared_model("tiny", cache)
    return cache


@dataclass(frozen=True, slots=True)
class ChaosEnv:
    """Keys for a server and ``tenants``, and a gateway config bound to a fixed 127.0.0.1 port."""

    root: Path
    keys: Path
    tenants: tuple[str, ...]
    config: Path
    data_dir: Path
    port: int
    admin_port: int

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gateway.sqlite3"

    def client_keys(self, tenant: str) -> ClientKeys:
        return ClientKeys.from_files(self.keys / "server.key", self.keys / f"{tenant}.key_secret")


def make_env(
    root: Path,
    cache: Path,
    tenants: Sequence[str],
    *,
    admission: str = "",
    data_dir: Path | None = None,
    group: Sequence[str] = (),
    max_batch: int = 8,
    outsiders: Sequence[str] = (),
    base: str = "tiny",
    drain_timeout_s: float = 2.0,
    admin_host: str | None = None,
    replace_keys: bool = False,
) -> ChaosEnv:
    """Keys (``outsiders`` get a pair the gateway does not know), tenants and ``root/gateway.toml``."""
    keys, allowed = root / "keys", root / "tenants"
    write_keys(keys, allowed, tenants, outsiders, replace=replace_keys)
    data = data_dir or root / "gateway-data"
    port, admin_port = free_port(), free_port()
    config = root / "gateway.toml"
    config.write_text(gateway_toml(
        bind=f"tcp://127.0.0.1:{port}", keys=keys, tenants_dir=allowed, data_dir=data, cache_dir=cache,
        admin_port=admin_port, drain_timeout_s=drain_timeout_s, admin_host=admin_host, base=base,
        max_batch=max_batch, group=group, extra=admission,
    ))  # fmt: skip
    return ChaosEnv(root, keys, tuple(tenants), config, data, port, admin_port)


class GatewayProcess:
    """One ``llmtwin gateway`` process at a time for ``env``; start again after a kill (same port)."""

    def __init__(self, env: ChaosEnv, log: Path | None = None) -> None:
        self.env = env
        self.log = log or env.root / "gateway.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.max_rss_mb = 0.0
        self.starts = 0

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shared", "gateway", "--config", str(self.env.config),
                stdout=out, stderr=out,
            )  # fmt: skip
        self.starts += 1
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start the gateway first"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def _wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.env.admin_port}/readyz"
        deadline = time.monotonic() + START_LIMIT_S
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    tail = self.log.read_bytes()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"gateway exited with {self.proc.returncode} while starting: {tail}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gateway not ready in {START_LIMIT_S} s")
                await asyncio.sleep(0.05)  # readiness poll of another process, not a synchronisation sleep

    def sample_rss(self) -> float:
        """The gateway's current RSS in MiB (its peak so far goes into ``max_rss_mb``)."""
        if self.proc is None or self.proc.returncode is not None:
            return 0.0
        rss = hwm = 0.0
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
        self.max_rss_mb = max(self.max_rss_mb, rss, hwm)
        return rss

    async def kill9(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.sample_rss()
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        """SIGTERM (graceful drain); kill -9 if it does not exit in 30 s. Returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.sample_rss()
            await terminate(self.proc, STOP_LIMIT_S)
        return int(self.proc.returncode or 0)


@contextlib.asynccontextmanager
async def gateway(env: ChaosEnv, log: Path | None = None) -> AsyncIterator[GatewayProcess]:
    """A started gateway process, stopped (or killed) on exit whatever happens."""
    gw = GatewayProcess(env, log)
    try:
        await gw.start()
        yield gw
    finally:
        with contextlib.suppress(ProcessLookupError):
            await gw.stop()


def query_db(path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows from another process's SQLite file, read-only (empty when the file or table is missing)."""
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql, tuple(params)).fetchall()]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def integrity(path: Path) -> str:
    """SQLite's own verdict on a database file ("ok" when intact)."""
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()
