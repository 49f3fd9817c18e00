"""Gateway set-up shared by the benchmarks and the tests: CURVE keys, the gateway TOML, a deadline wait.

Free of aiohttp and of the chaos parts, so ``tests/support/twin_harness.py`` can import it cheaply.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from shared.keys import generate_keypair


def write_keys(
    keys: Path, tenants_dir: Path, allowed: Sequence[str], others: Sequence[str] = (), *, replace: bool = False
) -> None:
    """Key pairs for ``server``, ``allowed`` and ``others`` in ``keys`` (existing pairs kept unless
    ``replace``); the public keys of ``allowed`` copied into ``tenants_dir``."""
    tenants_dir.mkdir(parents=True, exist_ok=True)
    for name in ("server", *allowed, *others):
        if replace or not (keys / f"{name}.key_secret").exists():
            generate_keypair(keys, name, overwrite=replace)
    for name in allowed:
        (tenants_dir / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())


def gateway_toml(
    *,
    bind: str,
    keys: Path,
    tenants_dir: Path,
    data_dir: Path,
    cache_dir: Path,
    admin_port: int,
    drain_timeout_s: float,
    admin_host: str | None = None,
    base: str = "tiny",
    max_batch: int = 8,
    group: Sequence[str] = (),
    extra: str = "",
) -> str:
    """A gateway config: one thread, 8 bank slots, 5 ms batching; ``group`` (if any) is the ``street``
    sharing group; ``extra`` is appended as is (e.g. ``[limits]`` or ``[admission]`` tables)."""
    circle = ", ".join(f'"{t}"' for t in group)
    sharing = f"[sharing]\ngroups = {{ street = [{circle}] }}\n" if group else ""
    host = f'host = "{admin_host}"\n' if admin_host is not None else ""
    return f"""[server]
bind = "{bind}"
server_secret_key = "{keys / "server.key_secret"}"
tenants_dir = "{tenants_dir}"
drain_timeout_s = {drain_timeout_s}
[storage]
data_dir = "{data_dir}"
[model]
base = "{base}"
cache_dir = "{cache_dir}"
threads = 1
bank_slots = 8
[batching]
max_batch = {max_batch}
max_wait_ms = 5
{sharing}[admin]
{host}port = {admin_port}
{extra}
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for configs that need a fixed port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(condition: Callable[[], bool], limit_s: float = 60.0, *, every_s: float = 0.02) -> None:
    """Wait for ``condition`` with a deadline: a condition wait for state that has no event to await
    (a row in another process's SQLite file, a counter in another component)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached in {limit_s} s")
        await asyncio.sleep(every_s)
