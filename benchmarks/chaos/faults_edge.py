"""Faults on the edge side: kill -9 the edge daemon mid-send; cut the link with a relay for a while."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.chaos.cases import CaseResult
from benchmarks.chaos.device import Device
from benchmarks.chaos.edgeproc import EdgeProcess, edge_profile
from benchmarks.chaos.gatewayproc import ChaosEnv, GatewayProcess, integrity, make_env, query_db, until
from benchmarks.relay import TcpRelay

if TYPE_CHECKING:
    from benchmarks.chaos.faults import FaultOptions

TWIN = "home1"


def _gateway_seqs(db: Path, twin: str) -> list[int]:
    rows = query_db(db, "SELECT seq FROM prompts WHERE twin_id = ? ORDER BY received_ms, seq", [twin])
    return [int(r[0]) for r in rows]


def _outbox(db: Path) -> list[tuple[int, int, str, str]]:
    """(id, seq, status, prompt_kind) of the daemon's state items."""
    rows = query_db(db, "SELECT id, seq, status, prompt_kind FROM outbox WHERE kind = 'state' ORDER BY id")
    return [(int(i), int(s), str(st), str(k)) for i, s, st, k in rows]


async def edge_kill(work: Path, cache: Path, opts: FaultOptions) -> CaseResult:
    """The daemon (simulator at 600x, a prompt every 50 ms) syncs, its link is cut so a backlog builds
    up while its uplink keeps trying to send, and it is killed -9. Its outbox must be intact and
    everything queued before the kill delivered once, in order, after the restart."""
    case = CaseResult("edge_kill9")
    env = make_env(work, cache, [TWIN])
    gw = GatewayProcess(env)
    await gw.start()
    async with TcpRelay(env.port, drain_s=0) as relay:
        daemon = EdgeProcess(edge_profile(work, env, TWIN, endpoint=relay.endpoint), work / "edge.log")
        try:
            await _kill_and_restart(case, env, relay, daemon, opts)
        finally:
            await daemon.stop()
            await gw.stop()
    case.max_rss_mb = gw.max_rss_mb
    return case


def _pending(db: Path) -> int:
    return sum(1 for *_, st, _ in _outbox(db) if st == "pending")


async def _kill_and_restart(
    case: CaseResult, env: ChaosEnv, relay: TcpRelay, daemon: EdgeProcess, opts: FaultOptions
) -> None:
    await daemon.start()
    await until(lambda: len(_gateway_seqs(env.db_path, TWIN)) >= opts.edge_prompts, 120)
    relay.cut()
    await until(lambda: _pending(daemon.outbox) >= 5, 60)
    await daemon.kill9()
    verdict = integrity(daemon.outbox)
    case.expect(verdict == "ok", f"outbox after kill -9: {verdict}")
    at_kill = _outbox(daemon.outbox)
    acked_at_kill = {seq for _, seq, st, _ in at_kill if st == "acked"}
    held = set(_gateway_seqs(env.db_path, TWIN))
    case.expect(acked_at_kill <= held, "an item acked before the kill is missing at the gateway")
    last_id = max((i for i, *_ in at_kill), default=0)
    last_seq = max((seq for _, seq, *_ in at_kill), default=0)
    relay.restore()
    await daemon.start()
    await until(lambda: all(st != "pending" for i, _, st, _ in _outbox(daemon.outbox) if i <= last_id), 120)
    await until(lambda: max(_gateway_seqs(env.db_path, TWIN), default=0) > last_seq, 60)  # the new one syncs
    case.expect(await daemon.stop() == 0, "the restarted daemon did not exit cleanly on SIGTERM")
    _count(case, _outbox(daemon.outbox), _gateway_seqs(env.db_path, TWIN), last_id)
    case.evidence.update(items_at_kill=len(at_kill), pending_at_kill=sum(st == "pending" for *_, st, _ in at_kill),
                         acked_at_kill=len(acked_at_kill), outbox_integrity=verdict)  # fmt: skip


def _count(case: CaseResult, rows: list[tuple[int, int, str, str]], seqs: list[int], last_id: int) -> None:
    """Items queued before the kill: delivered, or superseded (coalesced) by a later acked item."""
    before = [(seq, st) for i, seq, st, _ in rows if i <= last_id]
    acked = {seq for _, seq, st, _ in rows if st == "acked"}
    case.sent = sum(1 for _, st in before if st != "coalesced")  # superseded items never travel
    case.evidence["coalesced"] = len(before) - case.sent
    case.acked = sum(st == "acked" for _, st in before)
    newest_acked = max(acked, default=-1)
    case.lost = len(acked - set(seqs))
    case.lost += sum(1 for seq, st in before if st == "rejected" or (st == "coalesced" and seq > newest_acked))
    case.duplicated = len(seqs) - len(set(seqs))
    case.expect(seqs == sorted(seqs), "prompts arrived out of seq order")


async def link_cut(work: Path, cache: Path, opts: FaultOptions, *, devices: int = 2) -> CaseResult:
    """Devices keep producing (a prompt every ``outage_period_s``) through a relay that is cut for
    ``outage_s``: the backlog is stored, coalesced within the outbox's bound, and delivered in order."""
    case = CaseResult("link_cut")
    twins = [f"dev{i}" for i in range(devices)]
    env = make_env(work, cache, twins)
    gw = GatewayProcess(env)
    await gw.start()
    try:
        async with TcpRelay(env.port, drain_s=0) as relay:
            devs = [Device(t, work, relay.endpoint, env.client_keys(t), max_pending_deltas=30) for t in twins]
            for d in devs:
                await d.__aenter__()
            try:
                await _through_outage(case, relay, devs, opts)
            finally:
                for d in devs:
                    await d.__aexit__(None, None, None)
        for d in devs:
            _verify_link(case, env.db_path, d)
    finally:
        await gw.stop()
    case.max_rss_mb = gw.max_rss_mb
    return case


async def _through_outage(case: CaseResult, relay: TcpRelay, devs: list[Device], opts: FaultOptions) -> None:
    value = 0

    async def produce_for(seconds: float) -> None:
        nonlocal value
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for d in devs:
                await d.put(value, "K" if value == 0 else "D")
            value += 1
            await asyncio.sleep(opts.outage_period_s)  # the devices' tick, not synchronisation

    await produce_for(1.0)
    await until(lambda: all(d.uplink.idle.is_set() for d in devs), 30)
    relay.cut()
    started = time.monotonic()
    await produce_for(opts.outage_s)
    outage = time.monotonic() - started
    relay.restore()
    await produce_for(0.5)
    await until(lambda: all(d.uplink.idle.is_set() for d in devs), 120)
    for d in devs:
        d.check()
    case.evidence.update(outage_s=round(outage, 1), prompts_per_device=value, relay_refused=relay.refused,
                         uplink_timeouts=sum(d.uplink.stats.timeouts for d in devs),
                         coalesced=sum(d.uplink.stats.coalesced for d in devs))  # fmt: skip
    case.evidence["last_value"] = value - 1


def _verify_link(case: CaseResult, db: Path, device: Device) -> None:
    outbox = query_db(device.db.path, "SELECT seq, status FROM outbox WHERE kind = 'state' ORDER BY id")
    statuses = [(int(s), str(st)) for s, st in outbox]
    acked = {seq for seq, st in statuses if st == "acked"}
    seqs = _gateway_seqs(db, device.twin)
    case.sent += sum(1 for _, st in statuses if st != "coalesced")  # merged into a later item, never sent
    case.acked += len(acked)
    case.lost += len(acked - set(seqs)) + sum(1 for _, st in statuses if st not in ("acked", "coalesced"))
    case.duplicated += len(seqs) - len(set(seqs))
    case.expect(seqs == sorted(seqs), f"{device.twin}: prompts arrived out of order")
    attrs = query_db(db, "SELECT attrs FROM entity_state WHERE twin_id = ?", [device.twin])
    final = json.loads(attrs[0][0]).get("brightness") if attrs else None
    case.expect(final == case.evidence.get("last_value"), f"{device.twin}: newest state {final} did not arrive")
