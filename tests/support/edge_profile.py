"""An edge daemon profile for tests: the simulator, a real gateway endpoint, admin on a free port."""

from __future__ import annotations

from pathlib import Path

from twin_harness import Env

from benchmarks.harness import free_port as free_port  # re-exported: tests import it from here

TWIN = "home1"


def edge_profile(
    root: Path,
    env: Env,
    endpoint: str,
    *,
    speed: float = 600.0,
    tick_s: float = 30.0,
    finetune: str = "enabled = false",
    extra: str = "",
    twin: str = TWIN,
    admin_port: int = 0,
) -> Path:
    """An edge profile for ``twin`` replaying home 1 of the scenario against ``endpoint``; fine-tuning
    off unless ``finetune`` (the ``[finetune]`` section's body) says otherwise."""
    text = f"""
[device]
twin_id = "{twin}"
profile = "test-hub"
arch = "x86_64"
memory_mb = 8192
cpu_cores = 2
data_dir = "{root / "edge-data"}"

[gateway]
endpoint = "{endpoint}"
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
home = 1
speed = {speed}

[state]
share = "group"

[admin]
port = {admin_port}

[finetune]
{finetune}
{extra}
"""
    path = root / "edge.toml"
    path.write_text(text)
    return path
