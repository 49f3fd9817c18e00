"""A real edge daemon process (``python -m shared edge --config``) for the chaos parts."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from benchmarks.chaos.gatewayproc import ChaosEnv
from edge.finetune.child import terminate

SENSITIVE = ("owner_name", "door_code", "presence_schedule", "alarm_pin", "wifi_password")


def edge_profile(
    root: Path,
    env: ChaosEnv,
    twin: str,
    *,
    home: int = 1,
    speed: float = 600.0,
    tick_s: float = 30.0,
    start_h: float = 18.0,
    capture: Path | None = None,
    endpoint: str | None = None,
    finetune: str = "enabled = false",
) -> Path:
    """A device profile for ``twin`` replaying home ``home`` of the default scenario (as ``llmtwin demo``
    writes them: the owner's secrets marked sensitive), fine-tuning off unless ``finetune`` (the section's
body) says otherwise, optional payload capture, through ``endpoint`` (default: the gateway's own)."""
    folder = root / twin
    folder.mkdir(parents=True, exist_ok=True)
    log = f'[log]\npayload_capture = "{capture}"\n' if capture is not None else ""
    text = f"""[device]
twin_id = "{twin}"
profile = "chaos-hub"
arch = "x86_64"
memory_mb = 8192
cpu_cores = 2
data_dir = "{folder / "data"}"
[gateway]
endpoint = "{endpoint or env.endpoint}"
server_public_key = "{env.keys / "server.key"}"
client_secret_key = "{env.keys / f"{twin}.key_secret"}"
request_timeout_s = 1.0
backoff_initial_s = 0.05
backoff_max_s = 0.5
[sampling]
tick_s = {tick_s}
keyframe_every_s = 3600.0
[[sources]]
type = "simulator"
home = {home}
speed = {speed}
start_h = {start_h}
[state]
share = "group"
sensitive_attributes = [{", ".join(f'"{a}"' for a in SENSITIVE)}]
[admin]
port = 0
[finetune]
{finetune}
{log}"""
    path = folder / "edge.toml"
    path.write_text(text)
    return path


class EdgeProcess:
    def __init__(self, profile: Path, log: Path) -> None:
        self.profile = profile
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def outbox(self) -> Path:
        return self.profile.parent / "data" / "edge.sqlite3"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shared", "edge", "--config", str(self.profile), stdout=out, stderr=out
            )

    async def kill9(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> int:
        if self.proc is None:
            return 0
        await terminate(self.proc, 30)
        return int(self.proc.returncode or 0)

