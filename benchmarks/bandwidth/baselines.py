"""The two baselines against the sink: (a) raw full-JSON state sync and (b) one FL round of full weights."""

from __future__ import annotations

from dataclasses import dataclass

import zmq
import zmq.asyncio

from benchmarks.bandwidth.options import BandwidthBench
from benchmarks.bandwidth.peers import RawPeer
from benchmarks.bandwidth.trace import Home, state_ticks
from benchmarks.bandwidth.wire import Timeline, Wire
from benchmarks.relay import TcpRelay


@dataclass(slots=True)
class RawHome:
    wire: Wire
    timeline: Timeline
    json_bytes: int
    ticks: int


async def raw_sync(ctx: zmq.asyncio.Context, port: int, public: bytes, home: Home, start_iso: str,
                   opts: BandwidthBench) -> RawHome:  # fmt: skip
    timeline = Timeline()
    json_bytes = ticks = 0
    async with TcpRelay(port) as relay, RawPeer(ctx, relay.endpoint, public) as peer:
        timeline.add(0.0, peer.wire.model)  # the handshake
        for now, body in state_ticks(home.changes, start_iso, opts.tick_s, opts.hours * 3600.0):
            timeline.add(now, await peer.send(body))
            json_bytes += len(body)
            ticks += 1
        wire = peer.sample(relay)
    return RawHome(wire, timeline, json_bytes, ticks)


async def fl_round(ctx: zmq.asyncio.Context, port: int, public: bytes, weights: memoryview, chunk: int) -> Wire:
    """One round of full weights, really sent; the counts of the round alone (handshake excluded)."""
    async with TcpRelay(port) as relay, RawPeer(ctx, relay.endpoint, public) as peer:
        before = peer.sample(relay)
        for offset in range(0, len(weights), chunk):
            await peer.send(weights[offset : offset + chunk])
        return peer.sample(relay) - before
