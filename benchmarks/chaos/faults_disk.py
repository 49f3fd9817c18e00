"""Faults on the gateway's storage: its data dir runs out of space; a stored adapter is damaged."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from benchmarks.chaos.cases import CaseResult
from benchmarks.chaos.device import Device, prompt_text
from benchmarks.chaos.gatewayproc import ChaosEnv, GatewayProcess, integrity, make_env, query_db, until
from benchmarks.gateway import upload
from edge.client import Reply, TwinClient
from shared.modelspec import find_prepared, load_spec
from shared.protocol import messages as m
from shared.protocol.results import QueryResult

TMPFS_SIZE = "2m"


@contextlib.contextmanager
def small_disk(folder: Path) -> Iterator[str]:
    """A ``TMPFS_SIZE`` tmpfs mounted on ``folder``; yields "" or, where mounting is not permitted (not
    root, no CAP_SYS_ADMIN), the reason, and the case is skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        yield f"cannot mount a tmpfs on the data dir: {done.stderr.strip() or done.returncode}"
        return
    try:
        yield ""
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of the file system under ``folder``."""
    filler = folder / "filler"
    with contextlib.suppress(OSError), open(filler, "ab") as fh:
        for size in (1 << 16, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * size)
                    fh.flush()
    return filler


async def disk_full(work: Path, cache: Path) -> CaseResult:
    case = CaseResult("disk_full")
    data = work / "gateway-data"
    with small_disk(data) as reason:
        if reason:
            case.skipped = reason
            return case
        env = make_env(work, cache, ["dev0", "dev1"], data_dir=data)
        gw = GatewayProcess(env)
        await gw.start()
        try:
            await _full_then_free(case, env.endpoint, env, gw, data)
        finally:
            await gw.stop()
        case.max_rss_mb = gw.max_rss_mb
        verdict = integrity(env.db_path)
        case.expect(verdict == "ok", f"gateway database after the full disk: {verdict}")
        case.evidence["integrity"] = verdict
    return case


async def _full_then_free(case: CaseResult, endpoint: str, env: ChaosEnv, gw: GatewayProcess, data: Path) -> None:
    async with (
        Device("dev0", env.root, endpoint, env.client_keys("dev0")) as dev,
        TwinClient(endpoint, env.client_keys("dev1")) as probe,
    ):
        for i in range(10):
            await dev.put(i, "K" if i == 0 else "D")
        await until(lambda: dev.uplink.stats.acked >= 10, 30)
        filler = await asyncio.to_thread(fill, data)
        for i in range(10, 40):
            await dev.put(i)
        codes = await _probe(probe)
        case.evidence["codes_while_full"] = codes
        case.expect(all(c == "storage_full" for c in codes.values() if c != "ok"), f"unclear errors: {codes}")
        case.expect(codes.get("state") == "storage_full", f"a state upload on a full disk got {codes.get('state')}")
        case.expect(codes.get("ping") == "ok", "the gateway stopped answering while its disk was full")
        case.expect(gw.proc is not None and gw.proc.returncode is None, "the gateway died on the full disk")
        case.evidence["acked_while_full"] = dev.uplink.stats.acked - 10
        filler.unlink()
        await until(lambda: dev.uplink.stats.acked >= 40, 60)
        after = await probe.request(m.StateUpload("dev1", 1, 1, "key", prompt_text("dev1", 1, "K")), timeout_s=10)
        case.expect(isinstance(after.message, m.Final), f"after space freed: {after.message}")
        dev.check()
        counts = await dev.counts()
    seqs = [int(r[0]) for r in query_db(env.db_path, "SELECT seq FROM prompts WHERE twin_id = 'dev0' ORDER BY seq")]
    case.sent, case.acked = 40, counts.get("acked", 0)
    case.lost = len(set(range(1, 41)) - set(seqs)) + counts.get("rejected", 0)
    case.duplicated = len(seqs) - len(set(seqs))
    case.evidence["outbox"] = counts


async def _probe(client: TwinClient) -> dict[str, str]:
    """One request of each storing kind on the full disk: the code each got ("ok" for a FINAL / PONG)."""

    def code(reply: Reply) -> str:
        return reply.message.code if isinstance(reply.message, m.Error) else "ok"

    out = {"ping": code(await client.request(m.Ping(), timeout_s=10))}
    state = m.StateUpload("dev1", 7, 7, "key", prompt_text("dev1", 7, "K"))
    out["state"] = code(await client.request(state, timeout_s=10))
    out["query"] = code(await client.request(m.Query("dev1", "lights?", max_new_tokens=2), timeout_s=30))
    begin = m.AdapterBegin("dev1", 1, 4096, "0" * 64, b"{}")
    out["adapter_begin"] = code(await client.request(begin, timeout_s=10))
    return out


async def corrupt_adapter(work: Path, cache: Path) -> CaseResult:
    """Flip bytes in one twin's stored artifact while the gateway is down: at the next start that twin gets
    503 adapter_unavailable (hash mismatch, detected at load), the others are served as before."""
    case = CaseResult("corrupt_adapter")
    twins = ["dev0", "dev1", "dev2"]
    env = make_env(work, cache, twins)
    model = find_prepared(cache, "tiny")
    assert model is not None
    spec = load_spec(model)
    gw = GatewayProcess(env)
    await gw.start()
    try:
        for i, twin in enumerate(twins[:2]):
            async with TwinClient(env.endpoint, env.client_keys(twin)) as client:
                await upload(client, spec, twin, 1, seed=100 + i, rank=8)
        await gw.stop()
        sha = str(query_db(env.db_path, "SELECT sha256 FROM adapter_versions WHERE twin_id = 'dev0'")[0][0])
        path = env.data_dir / "adapters" / sha[:2] / f"{sha}.onnx_adapter"
        blob = bytearray(path.read_bytes())
        for k in range(len(blob) - 64, len(blob) - 56):  # inside the last tensor's floats: parses, hash fails
            blob[k] ^= 0xFF
        path.write_bytes(bytes(blob))
        case.evidence["flipped"] = {"file": path.name, "bytes": 8, "sha_now": hashlib.sha256(blob).hexdigest()[:12]}
        await gw.start()
        answers = {t: await _ask(env, t) for t in (*twins, "dev0")}
        case.evidence["answers"] = {t: _describe(r) for t, r in answers.items()}
        bad = answers["dev0"].message
        case.expect(isinstance(bad, m.Error) and bad.code == "adapter_unavailable", f"corrupt adapter: {bad}")
        detected = isinstance(bad, m.Error) and any(k in bad.detail for k in ("AdapterHashMismatch", "AdapterCorrupt"))
        case.expect(detected, f"not refused as damaged: {bad}")
        for twin, version in (("dev1", 1), ("dev2", 0)):
            result = answers[twin].result
            case.expect(isinstance(result, QueryResult) and result.adapter_version == version,
                        f"{twin} not served with v{version}: {answers[twin].message}")  # fmt: skip
        case.sent = case.acked = 2
    finally:
        await gw.stop()
    case.max_rss_mb = gw.max_rss_mb
    return case


async def _ask(env: ChaosEnv, twin: str) -> Reply:
    async with TwinClient(env.endpoint, env.client_keys(twin)) as client:
        return await client.request(m.Query(twin, "what is on?", max_new_tokens=2), timeout_s=60)


def _describe(reply: Reply) -> str:
    if isinstance(reply.message, m.Error):
        return f"{reply.message.status} {reply.message.code}: {reply.message.detail}"
    result = reply.result
    return f"FINAL adapter v{result.adapter_version}" if isinstance(result, QueryResult) else "FINAL"
