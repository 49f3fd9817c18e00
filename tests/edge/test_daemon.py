"""The edge daemon end to end: simulator → state → prompts → outbox → real gateway, under systemd's eye."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from edge_profile import edge_profile, free_port
from twin_harness import Env, make_env, running, until

from edge.client import TwinClient
from edge.daemon import EdgeDaemon
from shared.config import EdgeConfig, load_config
from shared.protocol import messages as m
from shared.protocol.results import QueryResult

TWIN = "home1"


def gateway_seqs(env: Env) -> list[int]:
    db = env.cfg.storage.data_dir / "gateway.sqlite3"
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        return [int(r[0]) for r in conn.execute("SELECT seq FROM prompts WHERE twin_id = ? ORDER BY seq", (TWIN,))]
    finally:
        conn.close()


async def test_daemon_syncs_state_and_speaks_sd_notify(tmp_path: Path, tiny_model: Path, model_cache: Path) -> None:
    env = make_env(tmp_path / "gw", model_cache)
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.setblocking(False)
    async with running(env.cfg) as gw:
        cfg = load_config(EdgeConfig, edge_profile(tmp_path, env, gw.endpoint))
        daemon = EdgeDaemon(cfg, env={"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "2000000"}, drain_s=5)
        task = asyncio.create_task(daemon.run())
        await until(lambda: daemon.uplink is not None and daemon.uplink.stats.acked >= 5)
        async with TwinClient(gw.endpoint, env.client_keys(TWIN)) as client:
            reply = (await client.request(m.Query(TWIN, "Which lights are on?", max_new_tokens=3))).raise_for_error()
        assert isinstance(reply.result, QueryResult) and reply.result.used  # answered from synced state
        await until(lambda: daemon.notifier.sent >= 3)  # READY, then a watchdog ping and a status line
        daemon.request_stop()
        await asyncio.wait_for(task, 30)
    datagrams = []
    while True:
        try:
            datagrams.append(notify.recv(4096).decode())
        except BlockingIOError:
            break
    notify.close()
    assert datagrams[0].startswith("READY=1\nSTATUS=")
    assert "WATCHDOG=1" in datagrams  # progress was real, so the watchdog was petted
    assert any(d.startswith("STATUS=") and "prompts" in d for d in datagrams)
    assert datagrams[-1] == "STOPPING=1"
    seqs = gateway_seqs(env)
    assert seqs == list(range(1, len(seqs) + 1))


async def test_reload_applies_a_good_profile_and_refuses_a_bad_one(
    tmp_path: Path, tiny_model: Path, model_cache: Path
) -> None:
    env = make_env(tmp_path / "gw", model_cache)
    async with running(env.cfg) as gw:
        path = edge_profile(tmp_path, env, gw.endpoint)
        daemon = EdgeDaemon(load_config(EdgeConfig, path), config_path=path, env={}, drain_s=1)
        task = asyncio.create_task(daemon.run())
        await until(daemon.ready.is_set)
        path.write_text(path.read_text().replace("tick_s = 30.0", "tick_s = 60.0"))
        assert await daemon.reload()
        assert daemon.cfg.sampling.tick_s == 60.0
        path.write_text(path.read_text().replace('share = "group"', 'share = "everyone"'))
        assert not await daemon.reload()  # a bad file: logged, the running config stays
        assert daemon.cfg.state.share == "group"
        daemon.request_stop()
        await asyncio.wait_for(task, 30)


async def test_kill_9_mid_send_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, tiny_model: Path, model_cache: Path
) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = make_env(tmp_path / "gw", model_cache, bind=endpoint)
    profile = edge_profile(tmp_path, env, endpoint)
    outbox_db = tmp_path / "edge-data" / "edge.sqlite3"

    def pending() -> int:
        if not outbox_db.exists():
            return 0
        conn = sqlite3.connect(outbox_db)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            conn.close()

    cmd = [sys.executable, "-m", "shared", "edge", "--config", str(profile)]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    first = await asyncio.create_subprocess_exec(*cmd, **quiet)  # type: ignore[arg-type]
    try:
        await until(lambda: pending() >= 5)  # the gateway is down: prompts pile up durably
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    queued = pending()
    assert queued >= 5
    async with running(env.cfg):
        second = await asyncio.create_subprocess_exec(*cmd, **quiet)  # type: ignore[arg-type]
        try:
            await until(lambda: len(gateway_seqs(env)) >= queued)
        finally:
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 30) == 0
    seqs = gateway_seqs(env)
    assert seqs == sorted(set(seqs))  # no duplicate
    conn = sqlite3.connect(outbox_db)
    rows = conn.execute("SELECT seq, status, prompt_kind FROM outbox WHERE kind = 'state' ORDER BY seq").fetchall()
    conn.close()
    acked = [seq for seq, status, _ in rows if status == "acked"]
    assert acked == seqs[: len(acked)]  # the gateway holds exactly what the outbox saw acknowledged
    for seq, status, _ in rows[:queued]:  # everything queued before the kill: delivered, or superseded
        assert status == "acked" or any(k == "key" and s2 > seq and st == "acked" for s2, st, k in rows), seq


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_sigterm_exits_cleanly_without_a_gateway(tmp_path: Path, sig: int) -> None:
    """A daemon whose gateway never answers still stops promptly and with status 0."""
    from shared.keys import generate_keypair

    keys = tmp_path / "keys"
    generate_keypair(keys, "server")
    generate_keypair(keys, TWIN)
    env = Env(tmp_path, None, keys)  # type: ignore[arg-type]
    profile = edge_profile(tmp_path, env, f"tcp://127.0.0.1:{free_port()}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared", "edge", "--config", str(profile)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # wait for the daemon to say it serves
        if b"serving" in line:
            break
    proc.send_signal(sig)
    proc.stdout.close()
    assert proc.wait(30) == 0
