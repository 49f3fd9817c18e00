"""Issue 9 part 1: the hostile-input catalogue against a running gateway process, one test per case.

Each case must get its stable error code or a counted drop (see benchmarks/chaos/frames.py), and after
it the gateway must be alive, the well-behaved tenant served and the RSS within the stated bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from benchmarks.chaos.arena import RSS_GROWTH_BOUND_MB, Arena, Case
from benchmarks.chaos.flows import INJECTION
from benchmarks.chaos.hostile import hostile_cases
from benchmarks.chaos.probe import Probe, ProbeOptions
from edge.client import ClientKeys
from gateway.auth import TenantTable, ZapHandler
from gateway.queries import quote_line
from gateway.transport import RouterTransport, Sent
from shared.config.gateway import ServerSection
from shared.keys import generate_keypair, load_secret
from shared.protocol import DEFAULT_LIMITS, encode
from shared.protocol import messages as m
from shared.semantic import EntityState

pytestmark = pytest.mark.asyncio(loop_scope="module")
CASES = hostile_cases()


async def test_catalogue_names_are_unique_and_cover_every_group() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    groups = {c.group for c in CASES}
    assert groups == {"framing", "signature", "header", "body", "compression", "semantics", "flow"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_case(arena: Arena, case: Case) -> None:
    result = await arena.check(case)
    assert result.survived, result


async def test_rss_stayed_within_the_bound(arena: Arena) -> None:
    """Runs after the catalogue (same module, same gateway process)."""
    assert arena.max_rss_mb <= arena.baseline_rss_mb + RSS_GROWTH_BOUND_MB
    assert arena.rig.alive()


async def test_injected_lines_stay_one_quoted_line() -> None:
    """The flow case stores the injection; this is why it cannot pose as another home's data."""
    from gateway.prompts import StoredState

    state = StoredState("home2", EntityState("sensor.home2_note", INJECTION), 1, 1, "group")
    line = quote_line(state)
    assert "\n" not in line and line.startswith("> [home2] ")


async def _send_until_unroutable(transport: RouterTransport, peer: bytes, reply: list[bytes]) -> None:
    """Send to a vanished peer until the ROUTER reports it unroutable, as the gateway would.

    The route goes only when the socket has read to the end of the dead peer's inbound pipe (its
    delimiter; the pipe keeps undelivered messages until then) and finished the termination handshake
    with the I/O thread. libzmq does that reading when the socket is polled for input (ZMQ_EVENTS),
    which the gateway's is all the time: its receive loop keeps a recv pending, and pyzmq polls for it.
    A DONTWAIT send never yields to the event loop, so a loop of sends alone never polls; the test polls
    after each send instead. (The earlier version did not and, twice, in suites run beside a benchmark,
    sent for 10 s without the route going; plain CPU load did not reproduce it.)"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while loop.time() < deadline:
        if await transport.send(peer, reply) is Sent.UNROUTABLE:
            return
        transport.socket.get(zmq.EVENTS)  # the input poll a pending recv makes
    raise AssertionError("a vanished peer was never reported unroutable within 10 s of sends")


async def test_transport_counts_replies_beyond_the_hwm_and_to_vanished_peers(tmp_path: Path) -> None:
    """A slow consumer fills its pipe: sends return FULL (counted) instead of blocking; once the peer is
    gone they return UNROUTABLE. Driven on the transport itself: over the whole gateway the kernel's
    buffers take ~30,000 replies first."""
    keys, tenants = tmp_path / "keys", tmp_path / "tenants"
    tenants.mkdir()
    for name in ("server", "home1"):
        generate_keypair(keys, name)
    (tenants / "home1.key").write_bytes((keys / "home1.key").read_bytes())
    table = TenantTable(tenants)
    table.reload()
    ctx = zmq.asyncio.Context()
    zap = ZapHandler(ctx, table, "llmtwin")
    zap.bind()
    public, secret = load_secret(keys / "server.key_secret")
    server = ServerSection("tcp://127.0.0.1:*", keys / "server.key_secret", tenants, sndhwm=10)
    transport = RouterTransport(
        ctx, server, public_key=public, secret_key=secret, max_frame_bytes=DEFAULT_LIMITS.max_frame_bytes, tenants=table
    )
    endpoint = transport.bind()
    zap_task = asyncio.create_task(zap.run())
    client = ClientKeys.from_files(keys / "server.key", keys / "home1.key_secret")
    reply = encode(m.Pong(), rid=os.urandom(16)).frames
    gone = transport.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        async with Probe(ctx, endpoint, ProbeOptions(client, rcvhwm=1, rcvbuf=4096, read=False)) as slow:
            await slow.send(encode(m.Ping(), rid=os.urandom(16)).frames)
            inbound = await transport.recv()
            assert inbound.tenant == "home1"
            outcomes = [await transport.send(inbound.peer, reply) for _ in range(20_000)]
            assert Sent.FULL in outcomes and transport.counters.full == outcomes.count(Sent.FULL)
        async with asyncio.timeout(10):
            await gone.recv_multipart()  # the peer's connection is gone
        await _send_until_unroutable(transport, inbound.peer, reply)
        assert transport.counters.unroutable == 1
    finally:
        with contextlib.suppress(zmq.ZMQError):
            transport.socket.disable_monitor()  # before its reader closes (see edge.client.TwinClient)
        gone.close(linger=0)
        zap_task.cancel()
        await asyncio.gather(zap_task, return_exceptions=True)
        transport.close()
        zap.close()
        ctx.term()
