"""Kernel truth per connection at both ends, reconciled with the byte model, over real sockets.

A real gateway (CURVE, ZAP, the tiny model) on 127.0.0.1 and TwinClients with the edge's accounting;
the kernel's TCP_INFO counters of every connection are compared with the model (logged ``frame``
bytes + the ZMTP/CURVE handshake), and with a byte-counting TCP relay in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from edge_profile import edge_profile, free_port
from twin_harness import Env, make_env, running, until

from edge.accounting import EdgeAccounting
from edge.budget import DataBudget
from edge.client import TwinClient
from edge.daemon import EdgeDaemon
from shared.bwlog import BandwidthLog
from shared.config import EdgeConfig, load_config
from shared.errors import Forbidden
from shared.kernel_accounting import UNATTRIBUTED
from shared.metering import ByteMeter, handshake_bytes
from shared.metrics import Registry
from shared.protocol import messages as m
from shared.reconciliation import Reconciliation
from shared.semantic import EntityState, encode_prompt
from shared.tcpinfo import control_octets

UP, DOWN = handshake_bytes()  # client → server, server → client


@pytest.fixture
def env(tmp_path: Path, tiny_model: Path, model_cache: Path) -> Env:
    return make_env(tmp_path, model_cache)


@dataclass
class Edge:
    """What the edge daemon builds around its TwinClient: accounting, a bandwidth log, metrics."""

    twin: str
    log: BandwidthLog
    registry: Registry
    acct: EdgeAccounting

    @classmethod
    def make(cls, root: Path, twin: str, sample_s: float = 10.0) -> Edge:
        log = BandwidthLog(root / f"edge-{twin}.jsonl", side="edge", max_bytes=0, backups=0)
        log.start()
        registry = Registry()
        budget = DataBudget(10**9, time.time)
        return cls(twin, log, registry, EdgeAccounting(twin, ByteMeter(), log, registry, budget, sample_s=sample_s))

    def client(self, endpoint: str, env: Env) -> TwinClient:
        return TwinClient(endpoint, env.client_keys(self.twin), on_bytes=self.acct, connections=self.acct.kernel)


def state_text(twin: str, kind: str, brightness: int, probes: int = 0) -> str:
    states = [EntityState(f"light.{twin}_kitchen_ceiling", "on", (("brightness", brightness),))]
    states += [EntityState(f"sensor.{twin}_probe_{i}", f"{i * 7 % 101}") for i in range(probes)]
    return encode_prompt("K" if kind == "key" else "D", states, twin)  # type: ignore[arg-type]


async def traffic(client: TwinClient, twin: str, uploads: int = 4) -> None:
    """HELLO, a few state uploads (one large, so lz4 and long ZMTP frames are in), two queries."""
    (await client.request(m.Hello(twin, "test/1"))).raise_for_error()
    for seq in range(1, uploads + 1):
        kind = "key" if seq == 1 else "delta"
        text = state_text(twin, kind, seq * 10, probes=200 if seq == 2 else 0)
        msg = m.StateUpload(twin, seq, 1_000 + seq, kind, text, "private")  # type: ignore[arg-type]
        (await client.request(msg)).raise_for_error()
    for question in ("How bright is the kitchen ceiling light?", "Is the kitchen light on?"):
        (await client.request(m.Query(twin, question, max_new_tokens=3))).raise_for_error()


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def kernel_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "tcp_info"]


def reconcile_log(records: list[dict[str, Any]], side: str) -> dict[str, dict[str, int]]:
    """Independent of shared.accounting: per tenant, the last record of each connection (SYN/FIN
    octets taken out by its TCP state) against the handshakes + the logged frame bytes."""
    connecting = side == "edge"
    hs_in, hs_out = (DOWN, UP) if connecting else (UP, DOWN)
    last: dict[str, dict[str, Any]] = {}
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in records:
        if r["type"] == "tcp_info":
            last[r["conn"]] = r
        else:
            out[r["tenant"]][f"model_{r['dir']}"] += r["frame"]
    for r in last.values():
        t = out[r["tenant"]]
        ctl_in, ctl_out = control_octets(r["tcp_state"], connecting=connecting)
        t["kernel_in"] += r["bytes_received"] - ctl_in
        t["kernel_out"] += r["bytes_acked"] - ctl_out
        t["model_in"] += hs_in
        t["model_out"] += hs_out
        t["connections"] += 1
    return {k: dict(v) for k, v in out.items()}


def assert_close(rec: Reconciliation, *, fraction: float = 0.01) -> None:
    assert rec.within(fraction), rec.to_json()


async def test_both_ends_log_samples_per_tenant_and_match_the_model(env: Env, tmp_path: Path) -> None:
    edges = [Edge.make(tmp_path, "home1", sample_s=0.1), Edge.make(tmp_path, "home2", sample_s=0.1)]
    async with running(env.cfg) as gw:
        kernel = gw.kernel
        assert kernel is not None
        kernel.sample_s = 0.1
        kernel.wake()
        async with edges[0].client(gw.endpoint, env) as c1, edges[1].client(gw.endpoint, env) as c2:
            await asyncio.gather(traffic(c1, "home1"), traffic(c2, "home2", uploads=2))
            assert {c.tenant for c in kernel.live()} == {"home1", "home2"}
            # quiescent now: wait for the last delayed ACKs, then the live samples are exact too
            for k in (kernel, edges[0].acct.kernel, edges[1].acct.kernel):
                await until(lambda k=k: all(r.unacked == 0 for r in k.reconcile(by="conn")), 10)
                k.refresh()
                for rec in k.reconcile(by="tenant"):
                    assert (rec.inbound.absolute, rec.outbound.absolute) == (0, 0), rec.to_json()
            for edge in edges:
                conn = edge.acct.kernel.current()
                assert conn is not None and conn.tenant == edge.twin
                await until(lambda p=edge.log.path, c=conn: _logged(p, c.id, "sample"), 10)
            ids = {c.tenant: c.id for c in kernel.live()}
            for twin, conn_id in ids.items():
                await until(lambda i=conn_id: _logged(gw_log(env), i, "sample"), 10)
                edge_conn = next(e.acct.kernel.current() for e in edges if e.twin == twin)
                assert edge_conn is not None
                assert conn_id.split("@")[0] == edge_conn.id.split("@")[0]  # the same TCP 4-tuple
        await until(lambda: kernel.live() == [], 10)  # both clients gone: DISCONNECTED → close
        gateway_recs = {r.tenant: r for r in kernel.reconcile(by="tenant")}
    for edge in edges:
        edge.log.stop()
    for twin in ("home1", "home2"):
        assert_close(gateway_recs[twin])
        assert gateway_recs[twin].exact and gateway_recs[twin].connections == 1
        edge_rec = next(e for e in edges if e.twin == twin).acct.kernel.reconcile_tenant(twin)
        assert_close(edge_rec)
        assert edge_rec.exact
        # what one end received is what the other sent
        assert edge_rec.outbound.model == gateway_recs[twin].inbound.model
        assert edge_rec.inbound.model == gateway_recs[twin].outbound.model
    # the logs alone tell the same story
    gw_records = read_log(gw_log(env))
    for rec in kernel_records(gw_records):
        assert rec["tenant"] in ("home1", "home2"), rec
        assert rec["side"] == "gateway" and rec["twin"] == rec["tenant"]
    for edge in edges:
        records = read_log(edge.log.path)
        kernel_lines = kernel_records(records)
        assert {r["tenant"] for r in kernel_lines} == {edge.twin}
        assert [r["event"] for r in kernel_lines].count("close") == 1 and kernel_lines[-1]["event"] == "close"
        assert all(r.get("conn") for r in records)  # every message names its connection
        summary = reconcile_log(records, "edge")[edge.twin]
        assert summary["kernel_in"] == summary["model_in"] and summary["kernel_out"] == summary["model_out"]
        gw_summary = reconcile_log([r for r in gw_records if r["tenant"] == edge.twin], "gateway")[edge.twin]
        assert gw_summary["kernel_in"] == summary["kernel_out"]  # one TCP connection seen from both ends
        assert gw_summary["kernel_out"] == summary["kernel_in"]
        assert abs(gw_summary["kernel_in"] - gw_summary["model_in"]) <= 0.01 * gw_summary["model_in"]
        assert abs(gw_summary["kernel_out"] - gw_summary["model_out"]) <= 0.01 * gw_summary["model_out"]


def gw_log(env: Env) -> Path:
    return env.cfg.log.bandwidth_log or env.cfg.storage.data_dir / "bandwidth.jsonl"


def _logged(path: Path, conn: str, event: str) -> bool:
    return any(r.get("conn") == conn and r.get("event") == event for r in kernel_records(read_log(path)))


# ------------------------------------------------------------------------------------------------
# a byte-counting relay between the edge and the gateway


class Relay:
    """A TCP proxy on 127.0.0.1 that counts the stream bytes it forwards each way."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = 0  # edge → gateway
        self.down = 0  # gateway → edge
        self.finished = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Relay]:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(self._pipe(reader, up_writer, "up"), self._pipe(up_reader, writer, "down"))
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()
            self.finished += 1
        finally:
            self._tasks.discard(task)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, way: str) -> None:
        try:
            while data := await src.read(65536):
                setattr(self, way, getattr(self, way) + len(data))
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        with contextlib.suppress(OSError):
            if dst.can_write_eof():
                dst.write_eof()


async def test_logged_totals_match_what_a_relay_counted(env: Env, tmp_path: Path) -> None:
    edge = Edge.make(tmp_path, "home1")
    async with running(env.cfg) as gw:
        kernel = gw.kernel
        assert kernel is not None
        gw_port = int(gw.endpoint.rsplit(":", 1)[1])
        async with Relay(gw_port).running() as relay:
            async with edge.client(f"tcp://127.0.0.1:{relay.port}", env) as client:
                await traffic(client, "home1", uploads=6)
                conn = edge.acct.kernel.current()
                assert conn is not None and conn.handle.peer == f"127.0.0.1:{relay.port}"
            await until(lambda: relay.finished == 1, 10)
            await until(lambda: kernel.live() == [], 10)
        gateway_rec = kernel.reconcile_tenant("home1")
    edge.log.stop()
    edge_rec = edge.acct.kernel.reconcile_tenant("home1")
    # the model, from the logged frames + the handshake, against the relay's count of the stream
    records = read_log(edge.log.path)
    logged_out = UP + sum(r["frame"] for r in records if r["type"] != "tcp_info" and r["dir"] == "out")
    logged_in = DOWN + sum(r["frame"] for r in records if r["type"] != "tcp_info" and r["dir"] == "in")
    assert logged_out == edge_rec.outbound.model and logged_in == edge_rec.inbound.model
    assert abs(logged_out - relay.up) <= 0.01 * relay.up, (logged_out, relay.up)
    assert abs(logged_in - relay.down) <= 0.01 * relay.down, (logged_in, relay.down)
    assert gateway_rec.inbound.model == logged_out and gateway_rec.outbound.model == logged_in
    # and the kernel at both ends (each end's own TCP connection to the relay)
    for rec, stream_in, stream_out in ((edge_rec, relay.down, relay.up), (gateway_rec, relay.up, relay.down)):
        assert rec.exact and rec.inbound.kernel is not None and rec.outbound.kernel is not None
        assert rec.inbound.kernel - rec.inbound.control == stream_in, rec.to_json()
        assert rec.outbound.kernel - rec.outbound.control == stream_out, rec.to_json()


# ------------------------------------------------------------------------------------------------
# connection close


async def test_each_close_writes_a_final_record(env: Env, tmp_path: Path) -> None:
    edge = Edge.make(tmp_path, "home1", sample_s=3600)
    async with running(env.cfg) as gw:
        kernel = gw.kernel
        assert kernel is not None
        async with edge.client(gw.endpoint, env) as client:
            (await client.request(m.Ping())).raise_for_error()
            (await client.request(m.Hello("home1", "test/1"))).raise_for_error()
            assert [c.tenant for c in kernel.live()] == ["home1"]
            gw_conn = kernel.live()[0]
        # the device went away: the gateway's DISCONNECTED → one last, exact read → close record
        await until(lambda: kernel.live() == [], 10)
        assert gw_conn.closed and gw_conn.final == "exact"
        assert gw_conn.last is not None and gw_conn.last.state == "close_wait"
        await until(lambda: _logged(gw_log(env), gw_conn.id, "close"), 10)
        # a connection that never authenticates a message stays unattributed, and is closed too
        mallory = Edge.make(tmp_path, "mallory", sample_s=3600)
        async with mallory.client(gw.endpoint, env) as bad:
            with pytest.raises(Forbidden):
                await bad.request(m.Ping(), timeout_s=10)
        await until(lambda: kernel.live() == [], 10)
        refused = kernel.recent()[1:]  # libzmq may have retried the handshake: one or more
        assert refused and all(c.tenant == UNATTRIBUTED and c.messages_in == 0 for c in refused)
        # the gateway goes away first: the edge sees DISCONNECTED and writes its close record
        edge2 = Edge.make(tmp_path, "home2", sample_s=3600)
        client2 = edge2.client(gw.endpoint, env)
        await client2.__aenter__()
        try:
            (await client2.request(m.Ping())).raise_for_error()
            edge_conn = edge2.acct.kernel.current()
            assert edge_conn is not None
            gw.request_stop()
            await until(lambda: edge_conn.closed, 30)
            assert edge_conn.final == "exact" and edge_conn.last is not None
            assert edge_conn.last.state == "close_wait"  # the gateway's FIN, read before ours went out
        finally:
            await client2.__aexit__(None, None, None)
    edge.log.stop()
    edge2.log.stop()
    mallory.log.stop()
    for e in (edge, edge2):
        lines = kernel_records(read_log(e.log.path))
        assert [r["event"] for r in lines] == ["close"]
        assert lines[0]["final"] == "exact" and lines[0]["tenant"] == e.twin
    gw_lines = kernel_records(read_log(gw_log(env)))
    closes = [r for r in gw_lines if r["event"] == "close"]
    assert {r["tenant"] for r in closes} == {"home1", UNATTRIBUTED, "home2"}
    assert all(r["final"] == "exact" for r in closes)


# ------------------------------------------------------------------------------------------------
# the admin servers


async def test_gateway_admin_exposes_kernel_bytes_and_the_reconciliation(env: Env, tmp_path: Path) -> None:
    edge = Edge.make(tmp_path, "home1")
    async with running(env.cfg) as gw, edge.client(gw.endpoint, env) as client:
        await traffic(client, "home1", uploads=2)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gw.admin_url}/connections") as resp:
                assert resp.status == 200
                doc = await resp.json()
            async with http.get(f"{gw.admin_url}/metrics") as resp:
                text = await resp.text()
    edge.log.stop()
    assert doc["side"] == "gateway" and doc["handshake"] == {"in": UP, "out": DOWN}
    [conn] = doc["connections"]
    assert conn["tenant"] == "home1" and conn["bytes_received"] > UP and not conn["closed"]
    [tenant] = doc["tenants"]
    assert tenant["tenant"] == "home1" and tenant["in"]["kernel"] == conn["bytes_received"]
    assert abs(tenant["in"]["relative"]) <= 0.01
    assert f'llmtwin_gateway_kernel_bytes_total{{tenant="home1",direction="in"}} {conn["bytes_received"]}' in text
    assert 'llmtwin_gateway_kernel_model_difference_bytes{tenant="home1",direction="in"} 0' in text
    for layer in ("payload", "compressed", "frame"):
        assert f'llmtwin_gateway_bytes_total{{tenant="home1",direction="in",type="state",layer="{layer}"}}' in text
    edge_text = edge.registry.render()
    for layer in ("payload", "compressed", "frame"):
        assert f'llmtwin_edge_bytes_total{{tenant="home1",direction="out",type="state",layer="{layer}"}}' in edge_text
    assert 'llmtwin_edge_kernel_bytes_total{tenant="home1",direction="out"}' in edge_text


async def test_edge_daemon_status_reports_its_connection_reconciled(env: Env, tmp_path: Path) -> None:
    async with running(env.cfg) as gw:
        port = free_port()
        cfg = load_config(EdgeConfig, edge_profile(tmp_path, env, gw.endpoint, admin_port=port))
        daemon = EdgeDaemon(cfg, env={}, drain_s=1)
        task = asyncio.create_task(daemon.run())
        try:
            await until(lambda: daemon.uplink is not None and daemon.uplink.stats.acked >= 2)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/status") as resp:
                    status = await resp.json()
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    text = await resp.text()
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 30)
    kernel = status["kernel"]
    assert kernel["side"] == "edge" and kernel["handshake"] == {"in": DOWN, "out": UP}
    live = [c for c in kernel["connections"] if not c["closed"]]
    assert len(live) == 1 and live[0]["tenant"] == "home1" and live[0]["peer"] == gw.endpoint.removeprefix("tcp://")
    [tenant] = kernel["tenants"]
    assert tenant["tenant"] == "home1" and tenant["out"]["kernel"] >= UP and tenant["messages_out"] >= 2
    assert tenant["in"]["kernel"] is not None and tenant["in"]["kernel"] >= DOWN
    assert 'llmtwin_edge_kernel_bytes_total{tenant="home1",direction="out"}' in text
    assert 'llmtwin_edge_kernel_model_difference_bytes{tenant="home1",direction="in"}' in text
    assert 'llmtwin_edge_bytes_total{tenant="home1",direction="out",type="state",layer="frame"}' in text
    records = read_log(cfg.device.data_dir / "bandwidth.jsonl")
    closes = [r for r in kernel_records(records) if r["event"] == "close"]
    assert closes and closes[-1]["tenant"] == "home1" and closes[-1]["final"] == "exact"
