"""Part 4, load: N edges × M messages through real uplinks, then fairness under a noisy neighbour.

Loopback only, bounded in count and time, against a real gateway process:

1. ``delivery``: ``edges`` in-process devices (outbox + TwinClient + Uplink each, one CURVE connection
   per device) queue ``messages`` state prompts each as fast as they can. Afterwards every prompt
   must be in the gateway's prompt DB once, in seq order, and every acknowledged rid must still have
   its stored reply (FETCH from a fresh connection: a 404 would mean a retry executes it again).
2. ``fairness``: ``quiet`` tenants ask one question at a time (closed loop), first alone (the
   baseline), then while one ``noisy`` tenant floods queries in waves far above its admission rate.
   Quiet tenants must all be served; the noisy one gets 429s. p50/p99 of the quiet latency in both
   phases and their ratio are reported (reported, not asserted: this box is shared).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from benchmarks.chaos.cases import CaseResult, counts
from benchmarks.chaos.device import Device
from benchmarks.chaos.faults import verify_state
from benchmarks.chaos.gatewayproc import ChaosEnv, GatewayProcess, make_env, tiny_cache, until
from benchmarks.chaos.report import ChaosCounts
from edge.client import TwinClient
from shared.protocol import messages as m

ADMISSION = """[admission]
rate_per_s = 5.0
burst = 10
max_inflight_per_tenant = 2
queue_cap = 64
"""


@dataclass(frozen=True, slots=True)
class LoadOptions:
    edges: int = 16
    messages: int = 100  # per edge
    quiet: int = 3
    quiet_queries: int = 15  # per quiet tenant and phase
    noisy_wave: int = 40  # concurrent queries per noisy wave
    new_tokens: int = 4
    limit_s: float = 300.0  # for the delivery phase


async def run_part(work: Path, cache_dir: Path | None, opts: LoadOptions = LoadOptions()) -> ChaosCounts:
    cache = await asyncio.to_thread(tiny_cache, cache_dir)
    edges = [f"edge{i:03d}" for i in range(opts.edges)]
    quiet = [f"quiet{i}" for i in range(opts.quiet)]
    env = make_env(work, cache, [*edges, *quiet, "noisy"], admission=ADMISSION)
    gw = GatewayProcess(env)
    await gw.start()
    sampler = asyncio.create_task(_sample(gw))
    try:
        delivery = await deliver(env, work, edges, opts)
        fairness = await fair(env, quiet, opts)
    finally:
        sampler.cancel()
        await gw.stop()
    delivery.max_rss_mb = fairness.max_rss_mb = gw.max_rss_mb
    return counts([delivery, fairness])


async def _sample(gw: GatewayProcess) -> None:
    while True:
        gw.sample_rss()
        await asyncio.sleep(0.25)  # RSS sampling period


async def deliver(env: ChaosEnv, work: Path, twins: list[str], opts: LoadOptions) -> CaseResult:
    case = CaseResult("delivery")
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        devices = [await stack.enter_async_context(Device(t, work, env.endpoint, env.client_keys(t), timeout_s=5.0))
                   for t in twins]  # fmt: skip
        await asyncio.gather(*(_fill(d, opts.messages) for d in devices))
        await until(lambda: sum(d.uplink.stats.acked for d in devices) >= len(devices) * opts.messages, opts.limit_s)
        elapsed = time.monotonic() - started
        for d in devices:
            d.check()
        await verify_state(case, env, devices)
        case.evidence.update(edges=len(devices), messages_per_edge=opts.messages, seconds=round(elapsed, 2),
                             messages_per_s=round(case.acked / elapsed, 1),
                             retries=sum(d.uplink.stats.retries + d.uplink.stats.timeouts for d in devices),
                             re_executed_unacknowledged=sum(d.replies.re_executed for d in devices))  # fmt: skip
    return case


async def _fill(device: Device, n: int) -> None:
    for i in range(n):
        await device.put(i, "K" if i == 0 else "D")


async def fair(env: ChaosEnv, quiet: list[str], opts: LoadOptions) -> CaseResult:
    case = CaseResult("noisy_neighbour")
    alone = await _quiet_round(env, quiet, opts)
    stop = asyncio.Event()
    noisy: dict[str, int] = {}
    flood = asyncio.create_task(_flood(env, opts, stop, noisy))
    try:
        crowded = await _quiet_round(env, quiet, opts)
    finally:
        stop.set()
        await flood
    for latencies, failures in (alone, crowded):
        case.sent += len(latencies) + len(failures)
        case.acked += len(latencies)
        case.expect(not failures, f"quiet tenants refused: {failures[:5]}")
    case.expect(noisy.get("rate_limited", 0) > 0, f"the noisy tenant was never limited: {noisy}")
    p99_alone, p99_crowded = _pct(alone[0], 99), _pct(crowded[0], 99)
    case.evidence.update(
        quiet_alone={"p50_s": _pct(alone[0], 50), "p99_s": p99_alone, "n": len(alone[0])},
        quiet_with_noisy={"p50_s": _pct(crowded[0], 50), "p99_s": p99_crowded, "n": len(crowded[0])},
        p99_ratio=round(p99_crowded / p99_alone, 2) if p99_alone and p99_crowded else None,
        noisy=noisy,
    )
    return case


async def _quiet_round(env: ChaosEnv, quiet: list[str], opts: LoadOptions) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    failures: list[str] = []

    async def one(tenant: str) -> None:
        async with TwinClient(env.endpoint, env.client_keys(tenant)) as client:
            for i in range(opts.quiet_queries):
                t0 = time.monotonic()
                reply = await client.request(m.Query(tenant, f"is light {i} on?", max_new_tokens=opts.new_tokens),
                                             timeout_s=60)  # fmt: skip
                if isinstance(reply.message, m.Final):
                    latencies.append(time.monotonic() - t0)
                else:
                    failures.append(f"{tenant}: {getattr(reply.message, 'code', reply.message)}")
                await asyncio.sleep(0.1)  # a quiet tenant's think time, well under its admission rate

    await asyncio.gather(*(one(t) for t in quiet))
    return latencies, failures


async def _flood(env: ChaosEnv, opts: LoadOptions, stop: asyncio.Event, outcome: dict[str, int]) -> None:
    """Waves of ``noisy_wave`` concurrent queries until ``stop``; counts the reply codes."""
    async with TwinClient(env.endpoint, env.client_keys("noisy")) as client:
        while not stop.is_set():
            wave = [client.request(m.Query("noisy", f"flood {i}", max_new_tokens=opts.new_tokens), timeout_s=60)
                    for i in range(opts.noisy_wave)]  # fmt: skip
            for reply in await asyncio.gather(*wave, return_exceptions=True):
                key = type(reply).__name__ if isinstance(reply, BaseException) else (
                    reply.message.code if isinstance(reply.message, m.Error) else "served")  # fmt: skip
                outcome[key] = outcome.get(key, 0) + 1


def _pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 4)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 4)
