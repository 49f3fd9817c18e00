"""``llmtwin bench gateway``: many tenants, each with its own adapter, through the real gateway.

Everything is real: a GatewayService with CURVE/ZAP on 127.0.0.1, adapters uploaded with the chunked
protocol, closed-loop clients (each sends a query, waits for its answer, sends the next).

Phases, one after the other in the same process:

1. ``base``      the same load from one tenant whose twin has no adapter (plain base model rows);
2. ``mixed``     ``tenants`` tenants, each twin with its own adapter (one LoRA per batch row);
3. ``hot_swap``  a tenant commits a new adapter version; time from the commit's FINAL to the first
                 answer served by the new version, and the bank swap-in itself;
4. ``many``      ``registered`` adapters registered, far more than bank slots: a random tenant per
                 request, so most requests swap an adapter in (p50/p99 reported).

tok/s = generated tokens / wall time of the phase. The JSON carries every number the README quotes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq.asyncio

from benchmarks.engine import random_adapter
from edge.client import ClientKeys, TwinClient
from gateway.service import GatewayService
from shared.adapters import AdapterManifest, write_adapter
from shared.config import GatewayConfig, parse_config
from shared.keys import generate_keypair
from shared.modelspec import ModelSpec, default_cache_dir, find_prepared, load_spec
from shared.protocol import messages as m
from shared.protocol.results import QueryResult, UploadStatus


@dataclass(frozen=True, slots=True)
class GatewayBench:
    base: str = "smollm2-135m"
    tenants: int = 64
    registered: int = 1000
    duration_s: float = 60.0
    new_tokens: int = 16
    max_batch: int = 32
    slots: int = 65
    rank: int = 8
    cache_dir: Path | None = None


def run(out: Path, opts: GatewayBench = GatewayBench()) -> dict[str, Any]:
    cache = opts.cache_dir or default_cache_dir(os.environ)
    model_dir = find_prepared(cache, opts.base)
    if model_dir is None:
        raise SystemExit(f"bench gateway: run `llmtwin model prepare --base {opts.base}` first")
    with tempfile.TemporaryDirectory(prefix="llmtwin-bench-gw-") as tmp:
        result = asyncio.run(_bench(Path(tmp), cache, load_spec(model_dir), opts))
    result |= {"model": opts.base, "machine": f"{platform.machine()}, {os.cpu_count()} cpus"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


async def _bench(root: Path, cache: Path, spec: ModelSpec, opts: GatewayBench) -> dict[str, Any]:
    names = [f"t{i:04d}" for i in range(max(opts.tenants, opts.registered))]
    keys = root / "keys"
    tenants_dir = root / "tenants"
    tenants_dir.mkdir(parents=True)
    generate_keypair(keys, "server")
    for name in names[: opts.tenants + 1]:
        generate_keypair(keys, name)
        (tenants_dir / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())
    cfg = _config(root, cache, opts)
    service = GatewayService(cfg, env={})
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    try:
        result: dict[str, Any] = {
            "tenants": opts.tenants,
            "new_tokens": opts.new_tokens,
            "max_batch": opts.max_batch,
            "duration_s": opts.duration_s,
        }
        base = await _load(service.endpoint, keys, [names[opts.tenants]] * opts.tenants, opts)
        result |= {"base_tok_s": base["tok_s"], "base_p50_ms": base["p50_ms"], "base_p99_ms": base["p99_ms"]}
        await _upload_all(service.endpoint, keys, spec, names[: opts.tenants], opts, version=1)
        mixed = await _load(service.endpoint, keys, names[: opts.tenants], opts)
        result |= {
            "tok_s": mixed["tok_s"],
            "p50_ms": mixed["p50_ms"],
            "p99_ms": mixed["p99_ms"],
            "ratio_vs_base": round(mixed["tok_s"] / base["tok_s"], 3),
        }
        result |= await _hot_swap(service, keys, spec, names[0], opts)
        if opts.registered > opts.tenants:
            result |= await _many(service, root, keys, spec, names[: opts.registered], opts)
    finally:
        service.request_stop()
        await task
    return result


def _config(root: Path, cache: Path, opts: GatewayBench) -> GatewayConfig:
    text = f"""
[server]
bind = "tcp://127.0.0.1:*"
server_secret_key = "{root / "keys" / "server.key_secret"}"
tenants_dir = "{root / "tenants"}"
rcvhwm = 10000
sndhwm = 10000
[storage]
data_dir = "{root / "data"}"
resident_budget_mb = 100000
[model]
base = "{opts.base}"
cache_dir = "{cache}"
threads = {os.cpu_count() or 2}
bank_slots = {opts.slots}
[batching]
max_batch = {opts.max_batch}
max_wait_ms = 5
[admission]
max_inflight_per_tenant = {opts.tenants}
rate_per_s = 100000
burst = 100000
queue_cap = 100000
"""
    import tomllib

    return parse_config(GatewayConfig, tomllib.loads(text), root / "gateway.toml")


async def _load(endpoint: str, keys: Path, clients: list[str], opts: GatewayBench) -> dict[str, float]:
    """Closed loop: each client asks, waits, asks again, until the phase's time is up."""
    deadline = time.monotonic() + opts.duration_s
    latencies: list[float] = []
    tokens = 0

    async def one(name: str, index: int) -> None:
        nonlocal tokens
        async with TwinClient(endpoint, _keys(keys, name)) as client:
            n = 0
            while time.monotonic() < deadline:
                started = time.monotonic()
                q = m.Query(name, f"Question {index}.{n}: what is the state of the kitchen?", opts.new_tokens)
                reply = (await client.request(q, timeout_s=600)).raise_for_error()
                assert isinstance(reply.message, m.Final)
                latencies.append((time.monotonic() - started) * 1000)
                tokens += reply.message.acct.tokens_out
                n += 1

    started = time.monotonic()
    await asyncio.gather(*(one(name, i) for i, name in enumerate(clients)))
    wall = time.monotonic() - started
    return {
        "tok_s": round(tokens / wall, 2),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(_p99(latencies), 1),
    }


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _keys(keys: Path, name: str) -> ClientKeys:
    return ClientKeys.from_files(keys / "server.key", keys / f"{name}.key_secret")


async def _upload_all(
    endpoint: str, keys: Path, spec: ModelSpec, names: list[str], opts: GatewayBench, version: int
) -> None:
    for i, name in enumerate(names):
        async with TwinClient(endpoint, _keys(keys, name)) as client:
            await upload(client, spec, name, version, seed=1000 * version + i, rank=opts.rank)


async def upload(client: TwinClient, spec: ModelSpec, twin: str, version: int, *, seed: int, rank: int) -> float:
    """Write a random adapter for ``twin`` and upload it; returns the monotonic time of the commit reply."""
    adapter = random_adapter(spec, rank, seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.onnx_adapter"
        manifest = AdapterManifest(twin, version, spec.fingerprint, rank, float(2 * rank), spec.target_modules)
        written = write_adapter(path, dict(adapter.tensors), manifest)
        data = path.read_bytes()
    begin = m.AdapterBegin(twin, version, len(data), hashlib.sha256(data).hexdigest(), written.to_json().encode())
    status = (await client.request(begin)).raise_for_error().result
    while isinstance(status, UploadStatus) and not status.complete:
        if status.received >= len(data):
            status = (await client.request(m.AdapterCommit(status.upload_id))).raise_for_error().result
            continue
        chunk = m.AdapterChunk(status.upload_id, status.received, data[status.received : status.received + 256 * 1024])
        status = (await client.request(chunk)).raise_for_error().result
    return time.monotonic()


async def _hot_swap(
    service: GatewayService, keys: Path, spec: ModelSpec, twin: str, opts: GatewayBench
) -> dict[str, float]:
    """Commit v2 of a serving twin; time until an answer comes from v2, and the bank swap-in alone."""
    async with TwinClient(service.endpoint, _keys(keys, twin)) as client:
        committed = await upload(client, spec, twin, 2, seed=random.randrange(1 << 30), rank=opts.rank)
        reply = (await client.request(m.Query(twin, "hello?", 1))).raise_for_error()
        served = time.monotonic()
    assert isinstance(reply.result, QueryResult) and reply.result.adapter_version == 2
    swap_ms = service.residency.stats.last_swap_ms if service.residency is not None else float("nan")
    return {"hot_swap_ms": round(swap_ms, 2), "commit_to_first_answer_ms": round((served - committed) * 1000, 1)}


async def _many(
    service: GatewayService, root: Path, keys: Path, spec: ModelSpec, names: list[str], opts: GatewayBench
) -> dict[str, float]:
    """``registered`` twins with adapters, far more than bank slots; random twin per request."""
    tenants_dir = root / "tenants"
    for name in names:
        if not (keys / f"{name}.key").exists():
            generate_keypair(keys, name)
            (tenants_dir / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())
    service.tenants.reload()
    ctx = zmq.asyncio.Context()
    try:
        for i, name in enumerate(names[opts.tenants :]):
            async with TwinClient(service.endpoint, _keys(keys, name), context=ctx) as client:
                await upload(client, spec, name, 1, seed=50_000 + i, rank=2)
        swaps_before = service.residency.stats.swap_ins if service.residency else 0
        latencies: list[float] = []
        deadline = time.monotonic() + opts.duration_s
        rng = random.Random(7)

        async def worker() -> None:
            while time.monotonic() < deadline:
                name = rng.choice(names)
                async with TwinClient(service.endpoint, _keys(keys, name), context=ctx) as client:
                    started = time.monotonic()
                    q = m.Query(name, "what is the state of the kitchen?", opts.new_tokens)
                    (await client.request(q, timeout_s=600)).raise_for_error()
                    latencies.append((time.monotonic() - started) * 1000)

        await asyncio.gather(*(worker() for _ in range(opts.max_batch)))
    finally:
        ctx.term()
    swaps = (service.residency.stats.swap_ins if service.residency else 0) - swaps_before
    return {
        "registered": len(names),
        "resident_slots": opts.slots - 1,
        "many_requests": len(latencies),
        "many_swap_ins": swaps,
        "many_p50_ms": round(statistics.median(latencies), 1),
        "many_p99_ms": round(_p99(latencies), 1),
    }
