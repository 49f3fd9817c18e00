"""The hostile and auth parts' gateway: a ``GatewayProcess`` plus revocation (SIGHUP) and metrics.

The gateway runs as ``python -m shared gateway --config ...`` (what systemd runs), bound to 127.0.0.1,
so its RSS (``/proc/<pid>/status`` VmRSS) is the gateway's alone and a crash is a dead process, not a
failed test. Tenants ``home1``..``home3`` are allowed; ``mallory`` has a key pair the gateway does not
know. Counters come from the gateway's own ``/metrics``.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from types import TracebackType

import aiohttp

from benchmarks.chaos.gatewayproc import GatewayProcess, make_env
from edge.client import ClientKeys

TENANTS = ("home1", "home2", "home3")
OUTSIDERS = ("mallory",)


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
        self._gw: GatewayProcess | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def process(self) -> GatewayProcess:
        assert self._gw is not None, "start the rig first"
        return self._gw

    @property
    def port(self) -> int:
        return self.process.env.port

    @property
    def admin_port(self) -> int:
        return self.process.env.admin_port

    @property
    def endpoint(self) -> str:
        return self.process.env.endpoint

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self._gw is not None and self._gw.alive()

    def rss_mb(self) -> float:
        """The gateway's resident set size (VmRSS) in MiB; 0.0 once it is gone."""
        return self.process.sample_rss()

    def keys(self, name: str) -> ClientKeys:
        return self.process.env.client_keys(name)

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
        env = make_env(
            self.work, self.cache_dir, TENANTS, admission=self.extra_toml, data_dir=self.work / "data",
            group=TENANTS, outsiders=OUTSIDERS, base=self.base, drain_timeout_s=5.0, admin_host="127.0.0.1",
            replace_keys=True,
        )  # fmt: skip
        log = self.work / "gateway.log"
        log.write_bytes(b"")  # one log per rig (GatewayProcess appends across restarts)
        self._gw = GatewayProcess(env, log)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            await self._gw.start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._gw is not None:
            await self._gw.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None
