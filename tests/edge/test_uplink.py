"""The outbox and the uplink against a real gateway: store-and-forward, exactly once, in order."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from pathlib import Path

import pytest
from twin_harness import Env, make_env, running, until, write_tiny_adapter

from benchmarks.harness import free_port
from edge.client import TwinClient
from edge.outbox import Outbox, create_schema
from edge.uplink import Uplink, state_body
from shared.config.edge import GatewayLink
from shared.db import Database, connect
from shared.modelspec import load_spec
from shared.protocol import messages as m
from shared.semantic import EntityState, encode_prompt, merge_deltas

TWIN = "home1"


def prompt(i: int, kind: str = "D") -> str:
    return encode_prompt(kind, [EntityState(f"light.{TWIN}_kitchen", "on", (("brightness", i),))], TWIN)  # type: ignore[arg-type]


async def enqueue(db: Database, i: int, kind: str = "D") -> None:
    wire = "key" if kind == "K" else "delta"
    build = functools.partial(_body, i=i, kind=kind, wire=wire)
    await db.run(Outbox.put_state, TWIN, build, wire, time.time())


def _body(seq: int, *, i: int, kind: str, wire: str) -> bytes:
    return state_body(TWIN, seq, 1000 * seq, wire, prompt(i, kind), "private")


def link(env: Env, endpoint: str) -> GatewayLink:
    return GatewayLink(
        endpoint,
        env.keys / "server.key",
        env.keys / f"{TWIN}.key_secret",
        request_timeout_s=0.5,
        backoff_initial_s=0.02,
        backoff_max_s=0.1,
    )


def make_uplink(client: TwinClient, db: Database, env: Env, endpoint: str, max_deltas: int = 1000) -> Uplink:
    return Uplink(
        client,
        db,
        m.Hello(TWIN, "test/1"),
        link(env, endpoint),
        merge=lambda texts: merge_deltas(texts, TWIN),
        max_pending_deltas=max_deltas,
    )


def gateway_prompts(env: Env) -> list[tuple[int, int]]:
    conn = sqlite3.connect(env.cfg.storage.data_dir / "gateway.sqlite3")
    try:
        rows = conn.execute(
            "SELECT seq, received_ms FROM prompts WHERE twin_id = ? ORDER BY received_ms, seq", (TWIN,)
        ).fetchall()
    finally:
        conn.close()
    return [(int(a), int(b)) for a, b in rows]


@pytest.fixture
async def edge_db(tmp_path: Path) -> Database:
    db = Database(tmp_path / "edge" / "edge.sqlite3")
    await db.open(create_schema)
    yield db  # type: ignore[misc]
    await db.close()


async def test_gateway_down_then_back_delivers_everything_once_in_order(
    tmp_path: Path, tiny_model: Path, model_cache: Path, edge_db: Database
) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = make_env(tmp_path, model_cache, bind=endpoint)
    await enqueue(edge_db, 0, "K")
    for i in range(1, 20):
        await enqueue(edge_db, i)
    async with TwinClient(endpoint, env.client_keys(TWIN)) as client:
        uplink = make_uplink(client, edge_db, env, endpoint)
        task = asyncio.create_task(uplink.run())
        await until(lambda: uplink.stats.timeouts >= 3)  # the gateway is down: nothing is lost meanwhile
        async with running(env.cfg):
            await until(lambda: uplink.stats.acked == 20)
        task.cancel()
    seqs = [seq for seq, _ in gateway_prompts(env)]
    assert seqs == list(range(1, 21))  # every prompt exactly once, in order
    assert (await edge_db.run(Outbox.counts)) == {"acked": 20}


async def test_long_outage_coalesces_deltas_but_keeps_keyframes(
    tmp_path: Path, tiny_model: Path, model_cache: Path, edge_db: Database
) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = make_env(tmp_path, model_cache, bind=endpoint)
    for i in range(10):
        await enqueue(edge_db, i)
    await enqueue(edge_db, 99, "K")
    for i in range(10, 30):
        await enqueue(edge_db, i)
    async with running(env.cfg), TwinClient(endpoint, env.client_keys(TWIN)) as client:
        uplink = make_uplink(client, edge_db, env, endpoint, max_deltas=5)
        task = asyncio.create_task(uplink.run())
        await until(lambda: uplink.idle.is_set() and uplink.stats.acked >= 2)
        task.cancel()
    counts = await edge_db.run(Outbox.counts)
    assert counts == {"acked": 2, "coalesced": 29}  # the keyframe and one merged delta
    conn = sqlite3.connect(env.cfg.storage.data_dir / "gateway.sqlite3")
    state = conn.execute("SELECT attrs FROM entity_state WHERE twin_id = ?", (TWIN,)).fetchone()
    conn.close()
    assert '"brightness": 29' in state[0]  # the newest value arrived


async def test_resent_rid_after_lost_reply_is_not_executed_twice(
    tmp_path: Path, tiny_model: Path, model_cache: Path, edge_db: Database
) -> None:
    env = make_env(tmp_path, model_cache)
    await enqueue(edge_db, 1, "K")
    item = (await edge_db.run(Outbox.pending))[0]
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys(TWIN)) as client:
        # the first send reaches the gateway, but we act as if its reply was lost
        await client.request(m.StateUpload(TWIN, 1, 1000, "key", prompt(1, "K")), rid=item.rid)
        await edge_db.run(Outbox.attempted, item.id)
        uplink = make_uplink(client, edge_db, env, gw.endpoint)
        task = asyncio.create_task(uplink.run())
        await until(lambda: uplink.stats.acked == 1)
        task.cancel()
    assert [seq for seq, _ in gateway_prompts(env)] == [1]


async def test_adapter_upload_resumes_and_hot_swaps(
    tmp_path: Path, tiny_model: Path, model_cache: Path, edge_db: Database
) -> None:
    env = make_env(tmp_path, model_cache)
    spec = load_spec(tiny_model)
    artifact = write_tiny_adapter(tmp_path / "a1", spec, version=1, twin=TWIN)
    job = (
        f'{{"artifact": "{artifact}", "manifest": "{artifact.with_name("a.manifest.json")}", '
        f'"version": 1, "sha256": "{_sha(artifact)}"}}'
    ).encode()
    await edge_db.run(Outbox.put_adapter, TWIN, job, time.time())
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys(TWIN)) as client:
        uplink = make_uplink(client, edge_db, env, gw.endpoint)
        task = asyncio.create_task(uplink.run())
        await until(lambda: uplink.stats.acked == 1)
        assert uplink.stats.served_adapter_version == 1
        reply = (await client.request(m.Query(TWIN, "hello?", max_new_tokens=2))).raise_for_error()
        assert reply.result.adapter_version == 1  # type: ignore[union-attr]
        task.cancel()


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_outbox_survives_a_reopen(tmp_path: Path) -> None:
    conn = connect(tmp_path / "o.sqlite3")
    create_schema(conn)
    a = Outbox.put_state(conn, TWIN, lambda seq: state_body(TWIN, seq, 1, "key", prompt(1, "K"), "private"), "key", 1.0)
    b = Outbox.put_state(conn, TWIN, lambda seq: state_body(TWIN, seq, 1, "delta", prompt(2), "private"), "delta", 1.0)
    conn.close()
    conn = connect(tmp_path / "o.sqlite3")
    items = Outbox.pending(conn)
    assert [(i.seq, i.rid) for i in items] == [(1, a.rid), (2, b.rid)]  # same rids after a restart
    Outbox.finish(conn, a.id, "acked", "", 2.0)
    assert Outbox.last_acked_seq(conn, TWIN) == 1
    c = Outbox.put_state(conn, TWIN, lambda seq: state_body(TWIN, seq, 1, "delta", prompt(3), "private"), "delta", 3.0)
    assert c.seq == 3
