"""Part 3, faults: kill -9 the gateway under load and mid-upload, kill -9 the edge daemon, cut the link,
fill the gateway's disk, corrupt a stored adapter. Every case runs real processes and sockets.

Counting (per case, summed by :func:`benchmarks.chaos.cases.counts`):

- ``sent``: outbox items (state prompts, adapter chunks) and queries the clients expected to be acked
  (items the outbox merged into a later one while offline never travel: counted as ``coalesced``);
- ``acked``: of those, acknowledged (FINAL) by the gateway;
- ``lost``: acknowledged yet missing from the gateway's prompt DB / adapter store afterwards, or
  queued and neither delivered nor superseded by a later acknowledged keyframe/merged delta;
- ``duplicated``: a prompt stored twice, or an acknowledged rid whose reply the gateway no longer
  holds after the restart (a retry of it would execute again: checked with FETCH, which never executes).

The cases in faults_edge (edge kill, link cut) and faults_disk (disk full, corrupt adapter) follow the
same pattern; :func:`run_part` runs them all.
"""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from benchmarks.chaos.cases import CaseResult, counts
from benchmarks.chaos.device import Device
from benchmarks.chaos.gatewayproc import ChaosEnv, GatewayProcess, make_env, query_db, tiny_cache, until
from benchmarks.chaos.report import ChaosCounts
from benchmarks.engine import random_adapter
from edge.client import TwinClient
from shared.adapters import AdapterManifest, write_adapter
from shared.modelspec import find_prepared, load_spec
from shared.protocol import messages as m
from shared.protocol.results import QueryResult, UploadStatus

RETRY = (429, 500, 503, 504)


@dataclass(frozen=True, slots=True)
class FaultOptions:
    devices: int = 3
    prompts: int = 200  # per device, in the gateway-kill case
    kills: int = 2
    queries: int = 12
    outage_s: float = 120.0  # link cut duration (the issue: "for minutes")
    outage_period_s: float = 0.1  # one prompt per device every this many seconds during the outage
    edge_prompts: int = 30  # prompts the edge daemon must have delivered before it is killed


async def run_part(work: Path, cache_dir: Path | None, opts: FaultOptions = FaultOptions()) -> ChaosCounts:
    from benchmarks.chaos import faults_disk, faults_edge

    cache = await asyncio.to_thread(tiny_cache, cache_dir)
    cases = [
        await gateway_kill_under_load(work / "gateway-kill", cache, opts),
        await gateway_kill_mid_upload(work / "upload-kill", cache),
        await faults_edge.edge_kill(work / "edge-kill", cache, opts),
        await faults_edge.link_cut(work / "link-cut", cache, opts),
        await faults_disk.disk_full(work / "disk-full", cache),
        await faults_disk.corrupt_adapter(work / "corrupt-adapter", cache),
    ]
    return counts(cases)


# ---- gateway kill -9 under load -------------------------------------------------------------------


async def gateway_kill_under_load(work: Path, cache: Path, opts: FaultOptions) -> CaseResult:
    case = CaseResult("gateway_kill9_under_load")
    twins = [f"dev{i}" for i in range(opts.devices)]
    env = make_env(work, cache, twins)
    gw = GatewayProcess(env)
    await gw.start()
    try:
        async with AsyncExitStack() as stack:
            devices = [
                await stack.enter_async_context(Device(t, work, env.endpoint, env.client_keys(t))) for t in twins
            ]
            asker = await stack.enter_async_context(TwinClient(env.endpoint, env.client_keys(twins[0])))
            producer = asyncio.create_task(_produce(devices, opts.prompts))
            answered: list[bytes] = []
            asking = asyncio.create_task(_ask(asker, twins[0], opts.queries, answered))
            total = opts.devices * opts.prompts
            for k in range(opts.kills):
                await until(lambda k=k: _acked(devices) >= total * (k + 1) // (opts.kills + 1), 120)  # type: ignore[misc]
                gw.sample_rss()
                before = sum(d.uplink.stats.timeouts for d in devices)
                await gw.kill9()
                await until(lambda b=before: sum(d.uplink.stats.timeouts for d in devices) > b, 60)  # type: ignore[misc]
                await gw.start()
            await producer
            await until(lambda: _acked(devices) >= total, 180)
            await asking
            for d in devices:
                d.check()
            await verify_state(case, env, devices)
            case.sent += opts.queries
            case.acked += len(answered)
            await verify_replayable(case, env, twins[0], answered, "query")
            case.evidence["kills"] = opts.kills
            case.evidence["uplink_timeouts"] = sum(d.uplink.stats.timeouts for d in devices)
            case.evidence["re_executed_unacknowledged"] = sum(d.replies.re_executed for d in devices)
            gw.sample_rss()
    finally:
        await gw.stop()
    case.max_rss_mb = gw.max_rss_mb
    return case


async def _produce(devices: list[Device], n: int) -> None:
    for i in range(n):
        for d in devices:
            await d.put(i, "K" if i == 0 else "D")
        await asyncio.sleep(0.005)  # a device's pace, not synchronisation


def _acked(devices: list[Device]) -> int:
    return sum(d.uplink.stats.acked for d in devices)


async def _ask(client: TwinClient, twin: str, n: int, answered: list[bytes]) -> None:
    """Queries with fixed rids, retried with the *same* rid until FINAL (what a careful client does)."""
    for i in range(n):
        rid = hashlib.sha256(f"{twin}-q{i}".encode()).digest()[:16]
        query = m.Query(twin, f"question {i}: which lights are on?", max_new_tokens=4)
        while True:
            try:
                reply = await client.request(query, rid=rid, timeout_s=3.0)
            except TimeoutError:
                continue
            if isinstance(reply.message, m.Error) and reply.message.status in (*RETRY, 409):
                await asyncio.sleep(0.05)  # retry pacing, not synchronisation
                continue
            if isinstance(reply.message, m.Final):
                answered.append(rid)
            break


async def verify_state(case: CaseResult, env: ChaosEnv, devices: list[Device]) -> None:
    """Every acknowledged prompt is at the gateway exactly once and arrived in seq order."""
    for d in devices:
        rows = await d.rows()
        state = [(seq, status, rid) for seq, status, rid, kind in rows if kind == "state"]
        case.sent += sum(1 for _, status, _ in state if status != "coalesced")  # merged items never travel
        acked = {seq for seq, status, _ in state if status == "acked"}
        case.acked += len(acked)
        held = query_db(env.db_path, "SELECT seq FROM prompts WHERE twin_id = ? ORDER BY received_ms, seq", [d.twin])
        seqs = [int(r[0]) for r in held]
        case.lost += len(acked - set(seqs))
        case.lost += sum(1 for _, status, _ in state if status not in ("acked", "coalesced"))
        case.duplicated += len(seqs) - len(set(seqs))
        case.expect(seqs == sorted(seqs), f"{d.twin}: prompts arrived out of order")
        await verify_replayable(case, env, d.twin, [rid for _, status, rid in state if status == "acked"], "state")


async def verify_replayable(case: CaseResult, env: ChaosEnv, twin: str, rids: list[bytes], what: str) -> None:
    """FETCH every acknowledged rid from a fresh connection: the stored reply must come back (a 404 means
    a retry of that rid would execute it a second time)."""
    missing = 0
    async with TwinClient(env.endpoint, env.client_keys(twin)) as client:
        for rid in rids:
            reply = await client.fetch(rid, timeout_s=10)
            if not (isinstance(reply.message, m.Final) and reply.message.replayed):
                missing += 1
    case.duplicated += missing
    case.evidence[f"{twin}_{what}_rids_checked"] = len(rids)


# ---- gateway kill -9 in the middle of an adapter upload -------------------------------------------


def write_artifact(folder: Path, cache: Path, twin: str, version: int, seed: int) -> tuple[Path, Path, bytes]:
    """A random rank-8 adapter for the tiny base: (artifact, manifest file, artifact bytes)."""
    model = find_prepared(cache, "tiny")
    assert model is not None
    spec = load_spec(model)
    folder.mkdir(parents=True, exist_ok=True)
    adapter = random_adapter(spec, 8, seed)
    manifest = AdapterManifest(twin, version, spec.fingerprint, 8, 16.0, spec.target_modules)
    path = folder / f"{twin}-v{version}.onnx_adapter"
    written = write_adapter(path, dict(adapter.tensors), manifest)
    manifest_file = folder / f"{twin}-v{version}.manifest.json"
    manifest_file.write_bytes(written.to_json().encode())
    return path, manifest_file, path.read_bytes()


async def gateway_kill_mid_upload(work: Path, cache: Path, chunk: int = 1024) -> CaseResult:
    case = CaseResult("gateway_kill9_mid_upload")
    env = make_env(work, cache, ["dev0"])
    artifact, manifest_file, data = await asyncio.to_thread(write_artifact, work / "artifacts", cache, "dev0", 1, 11)
    sha = hashlib.sha256(data).hexdigest()
    gw = GatewayProcess(env)
    await gw.start()
    try:
        acked_bytes, chunks = await _half_upload(env, gw, data, sha, manifest_file.read_bytes(), chunk)
        staged = sorted(p.stat().st_size for p in (env.data_dir / "uploads").glob("*.part"))
        await gw.start()
        async with Device("dev0", work, env.endpoint, env.client_keys("dev0")) as dev:
            await dev.put_adapter(artifact, manifest_file, 1, sha)
            await until(lambda: dev.uplink.stats.served_adapter_version == 1 or dev.uplink.stats.rejected > 0, 60)
            statuses = list(dev.replies.upload_status or [])
            async with TwinClient(env.endpoint, env.client_keys("dev0")) as client:
                reply = await client.request(m.Query("dev0", "hello?", max_new_tokens=2), timeout_s=30)
        resumed = statuses[0].received if statuses else -1
        case.sent, case.acked = chunks + 1, chunks + (1 if dev.uplink.stats.served_adapter_version == 1 else 0)
        case.lost = int(resumed < acked_bytes)
        case.expect(resumed > 0, "the upload restarted from byte 0 instead of resuming")
        case.expect(isinstance(reply.result, QueryResult) and reply.result.adapter_version == 1,
                    f"the resumed adapter is not served: {reply.message}")  # fmt: skip
        rows = query_db(env.db_path, "SELECT sha256, size FROM adapter_versions WHERE twin_id = 'dev0'")
        case.expect(rows == [(sha, len(data))], f"stored version rows {rows}")
        stored = env.data_dir / "adapters" / sha[:2] / f"{sha}.onnx_adapter"
        case.duplicated = int(stored.is_file() and hashlib.sha256(stored.read_bytes()).hexdigest() != sha)
        case.evidence.update(size=len(data), chunk=chunk, acked_before_kill=acked_bytes, staged_at_kill=staged,
                             resumed_from=resumed, upload_replies=len(statuses))  # fmt: skip
    finally:
        await gw.stop()
    case.max_rss_mb = gw.max_rss_mb
    return case


async def _half_upload(
    env: ChaosEnv, gw: GatewayProcess, data: bytes, sha: str, manifest: bytes, chunk: int
) -> tuple[int, int]:
    """Upload about half in ``chunk``-byte pieces, send one more and kill -9 the gateway while it is in
    flight. Returns (bytes the gateway acknowledged, chunks acknowledged)."""
    async with TwinClient(env.endpoint, env.client_keys("dev0")) as client:
        begin = m.AdapterBegin("dev0", 1, len(data), sha, manifest)
        status = (await client.request(begin, timeout_s=10)).raise_for_error().result
        assert isinstance(status, UploadStatus)
        chunks = 0
        while status.received < len(data) // 2:
            piece = m.AdapterChunk(status.upload_id, status.received, data[status.received : status.received + chunk])
            status = (await client.request(piece, timeout_s=10)).raise_for_error().result
            assert isinstance(status, UploadStatus)
            chunks += 1
        acked = status.received
        last = m.AdapterChunk(status.upload_id, acked, data[acked : acked + chunk])
        in_flight = asyncio.ensure_future(client.request(last, timeout_s=2.0))
        await asyncio.sleep(0)  # let it leave
        await gw.kill9()
        try:
            reply = await in_flight
            if isinstance(reply.result, UploadStatus):
                acked, chunks = reply.result.received, chunks + 1
        except TimeoutError:
            pass
    return acked, chunks
