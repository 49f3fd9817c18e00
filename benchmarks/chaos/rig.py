"""A real gateway process for the chaos parts: keys, tenants, config, start, readiness, RSS, metrics.

The gateway runs as ``python -m shared gateway --config ...`` (what systemd runs), bound to 127.0.0.1,
so its RSS (``/proc/<pid>/status`` VmRSS) is the gateway's alone and a crash is a dead process, not a
failed test. Tenants ``home1``..``home3`` are allowed; ``mallory`` has a key pair the gateway does not
know. Counters come from the gateway's own ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

import aiohttp

from edge.client import ClientKeys
from edge.finetune.child import rss_mb as process_rss_mb
from shared.keys import generate_keypair

TENANTS = ("home1", "home2", "home3")
OUTSIDERS = ("mallory",)
START_LIMIT_S = 120.0
STOP_LIMIT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident set size of a process (VmRSS), in MiB; 0.0 once it is gone."""
    return process_rss_mb(pid) or 0.0


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value} (comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out


class GatewayRig:
    """``async with GatewayRig(work, cache) as gw``: a serving gateway process, stopped on exit."""

    def __init__(self, work: Path, cache_dir: Path, *, base: str = "tiny", extra_toml: str = "") -> None:
        self.work = work
        self.cache_dir = cache_dir
        self.base = base
        self.extra_toml = extra_toml
        self.keys_dir = work / "keys"
        self.tenants_dir = work / "tenants"
        self.port = 0
        self.admin_port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "start the rig first"
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def keys(self, name: str) -> ClientKeys:
        return ClientKeys.from_files(self.keys_dir / "server.key", self.keys_dir / f"{name}.key_secret")

    # ---- tenants -------------------------------------------------------------------------------

    def revoke(self, tenant: str) -> None:
        """Remove a tenant's key and tell the gateway (SIGHUP reloads the tenant list now)."""
        (self.tenants_dir / f"{tenant}.key").unlink()
        os.kill(self.pid, signal.SIGHUP)

    def allow(self, tenant: str) -> None:
        (self.tenants_dir / f"{tenant}.key").write_bytes((self.keys_dir / f"{tenant}.key").read_bytes())
        os.kill(self.pid, signal.SIGHUP)

    # ---- metrics -------------------------------------------------------------------------------

    async def metrics(self) -> dict[str, float]:
        assert self._http is not None
        async with self._http.get(self.admin_url + "/metrics") as r:
            return parse_metrics(await r.text())

    async def dropped(self, tenant: str, code: str) -> float:
        key = f'llmtwin_gateway_dropped_total{{tenant="{tenant}",code="{code}"}}'
        return (await self.metrics()).get(key, 0.0)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> GatewayRig:
        config = self._write()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        log = (self.work / "gateway.log").open("wb")
        with log:
            cmd = [sys.executable, "-m", "shared", "gateway", "--config", str(config)]
            self._proc = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=asyncio.subprocess.STDOUT)
        try:
            await self._wait_ready()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            if self._proc.returncode is None:
                self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), STOP_LIMIT_S)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _wait_ready(self) -> None:
        assert self._http is not None and self._proc is not None
        deadline = time.monotonic() + START_LIMIT_S
        while True:
            if self._proc.returncode is not None:
                tail = (self.work / "gateway.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the gateway exited with status {self._proc.returncode}:\n{tail}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self._http.get(self.admin_url + "/readyz") as r:
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway was not ready in {START_LIMIT_S:.0f} s")
            await asyncio.sleep(0.1)

    def _write(self) -> Path:
        self.work.mkdir(parents=True, exist_ok=True)
        self.tenants_dir.mkdir(exist_ok=True)
        generate_keypair(self.keys_dir, "server", overwrite=True)
        for name in (*TENANTS, *OUTSIDERS):
            generate_keypair(self.keys_dir, name, overwrite=True)
        for name in TENANTS:
            (self.tenants_dir / f"{name}.key").write_bytes((self.keys_dir / f"{name}.key").read_bytes())
        self.port, self.admin_port = free_port(), free_port()
        path = self.work / "gateway.toml"
        path.write_text(f"""[server]
bind = "{self.endpoint}"
server_secret_key = "{self.keys_dir / "server.key_secret"}"
tenants_dir = "{self.tenants_dir}"
drain_timeout_s = 5.0
[storage]
data_dir = "{self.work / "data"}"
[model]
base = "{self.base}"
cache_dir = "{self.cache_dir}"
threads = 1
bank_slots = 8
[batching]
max_batch = 8
max_wait_ms = 5
[sharing]
groups = {{ street = ["home1", "home2", "home3"] }}
[admin]
host = "127.0.0.1"
port = {self.admin_port}
{self.extra_toml}
""")
        return path
