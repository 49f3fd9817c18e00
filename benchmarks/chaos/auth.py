"""Part 2 of ``llmtwin bench chaos``: authentication and tenant identity against a running gateway.

Identity comes only from the CURVE key ZAP authenticated (DESIGN §5): a client without CURVE, with a
key the gateway does not know, or with the wrong server key never completes a handshake; a key
removed while connected is cut off at its next message; a twin, rid or routing id naming another
tenant in a message changes nothing about who the sender is. Every case is a :class:`Scenario`;
``tests/chaos/test_auth.py`` runs each as a test, :func:`run_part` counts them for the bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import zmq

from benchmarks.chaos.arena import ATTACKER, GOOD, Arena, Case, Scenario, counts, run_cases
from benchmarks.chaos.probe import Probe, ProbeOptions
from benchmarks.chaos.report import ChaosCounts
from benchmarks.chaos.rig import GatewayRig
from shared.modelspec import default_cache_dir
from shared.protocol import decode_result, encode
from shared.protocol import messages as m
from shared.protocol.results import HelloResult, StatsResult

REVOKED = "home3"
REFUSAL_S = 10.0  # a refused handshake is reported within this (CURVE + ZAP on loopback: milliseconds)


async def _refused(arena: Arena, options: ProbeOptions) -> str | None:
    """Connect, send a PING, and expect the handshake to fail (or the connection to be dropped)
    without any reply reaching the client."""
    rid = os.urandom(16)
    async with arena.probe(options) as probe:
        await probe.send(encode(m.Ping(), rid=rid).frames)
        failed = [
            asyncio.ensure_future(probe.wait_event(e, timeout_s=REFUSAL_S))
            for e in (
                zmq.EVENT_HANDSHAKE_FAILED_AUTH,
                zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                zmq.EVENT_DISCONNECTED,
            )
        ]
        done, pending = await asyncio.wait(failed, return_when=asyncio.FIRST_COMPLETED)
        for f in pending:
            f.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if not any(f.exception() is None for f in done):
            return "the handshake was neither refused nor dropped"
        if not await arena.good_served():  # the gateway answered everything before this point
            return "the well-behaved tenant was not served"
        if probe.replies.get(rid) or probe.events[zmq.EVENT_HANDSHAKE_SUCCEEDED]:
            return "the refused client completed a handshake or got a reply"
    return None


async def null_client(arena: Arena) -> str | None:
    return await _refused(arena, ProbeOptions(None))


async def plain_client(arena: Arena) -> str | None:
    return await _refused(arena, ProbeOptions(None, plain=True))


async def unknown_key(arena: Arena) -> str | None:
    denied = 'llmtwin_gateway_zap_total{result="denied"}'
    before = (await arena.rig.metrics()).get(denied, 0.0)
    verdict = await _refused(arena, ProbeOptions(arena.rig.keys("mallory")))
    after = (await arena.rig.metrics()).get(denied, 0.0)
    return verdict or (None if after > before else "ZAP did not count the denial")


async def wrong_server_key(arena: Arena) -> str | None:
    public, _ = zmq.curve_keypair()
    return await _refused(arena, ProbeOptions(arena.rig.keys(ATTACKER), server_key=public))


async def _raw_tcp(arena: Arena, payload: bytes) -> str | None:
    """Bytes that are not ZMTP at all, straight to the port: the gateway closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", arena.rig.port)
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(REFUSAL_S):
            while await reader.read(4096):  # the ZMTP greeting, then EOF once it sees our bytes
                pass
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return None


async def tcp_garbage(arena: Arena) -> str | None:
    return await _raw_tcp(arena, os.urandom(4096))


async def http_request(arena: Arena) -> str | None:
    return await _raw_tcp(arena, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 8)


async def revoked_while_connected(arena: Arena) -> str | None:
    """A connected tenant whose key file is removed: 403 on its next message (rid known), a counted
    drop for undecodable input, a refused handshake for a new connection; re-allowed, served again."""
    async with arena.probe(ProbeOptions(arena.rig.keys(REVOKED))) as victim:
        await victim.barrier()
        arena.rig.revoke(REVOKED)
        try:
            reply = await _until_reply(victim, lambda r: isinstance(r, m.Error))
            if not (isinstance(reply, m.Error) and reply.code == "forbidden"):
                return f"the revoked connection got {reply}"
            key = 'llmtwin_gateway_dropped_total{tenant="<revoked>",code="revoked"}'
            before = (await arena.rig.metrics()).get(key, 0.0)
            await victim.send([b"garbage"])
            await _until_reply(victim, lambda r: isinstance(r, m.Error))  # in order: the garbage was read
            if (await arena.rig.metrics()).get(key, 0.0) != before + 2:  # the garbage and the ping
                return "drops from the revoked connection were not counted"
            verdict = await _refused(arena, ProbeOptions(arena.rig.keys(REVOKED)))
            if verdict is not None:
                return f"a new connection with the revoked key: {verdict}"
        finally:
            arena.rig.allow(REVOKED)
        async with arena.probe(ProbeOptions(arena.rig.keys(REVOKED))) as back:
            await back.barrier(30)
    return None


async def _until_reply(probe: Probe, done: object, limit_s: float = 10.0) -> m.Message:
    """PING until the reply satisfies ``done`` (the gateway reloads its tenant list asynchronously)."""
    assert callable(done)
    deadline = time.monotonic() + limit_s
    while True:
        reply = await probe.request(m.Ping())
        if done(reply) or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(0.02)


async def _expect_error(arena: Arena, message: m.Message, code: str) -> str | None:
    assert arena.attacker is not None
    reply = await arena.attacker.request(message)
    return None if isinstance(reply, m.Error) and reply.code == code else f"got {reply}"


async def spoofed_hello(arena: Arena) -> str | None:
    return await _expect_error(arena, m.Hello(GOOD, "spoof/1"), "forbidden")


async def spoofed_state(arena: Arena) -> str | None:
    text = "K\nS.living_room_temperature 99"
    return await _expect_error(arena, m.StateUpload(GOOD, 1, 1, "key", text, "group"), "forbidden")


async def spoofed_sub_twin(arena: Arena) -> str | None:
    return await _expect_error(arena, m.Hello(GOOD + ".kitchen", "spoof/1"), "forbidden")


async def spoofed_stats(arena: Arena) -> str | None:
    assert arena.attacker is not None
    reply = await arena.attacker.request(m.Stats(GOOD))
    if not isinstance(reply, m.Final):
        return f"got {reply}"
    result = decode_result(reply.kind, reply.result)
    return None if isinstance(result, StatsResult) and result.tenant == ATTACKER else f"stats of {result}"


async def fetch_other_tenants_rid(arena: Arena) -> str | None:
    assert arena.good is not None and arena.attacker is not None
    rid = os.urandom(16)
    mine = await arena.good.request(m.Ping(), rid=rid)
    arena.attacker.replies.pop(rid, None)
    await arena.attacker.send(encode(m.Fetch(rid), rid=os.urandom(16)).frames)
    stolen = await arena.attacker.wait(rid)
    ok = isinstance(mine, m.Pong) and isinstance(stolen, m.Error) and stolen.code == "unknown_rid"
    return None if ok else f"FETCH of another tenant's rid got {stolen}"


async def routing_id_named_after_tenant(arena: Arena) -> str | None:
    """A routing id that spells another tenant is an address, not an identity."""
    async with arena.probe(ProbeOptions(arena.rig.keys(ATTACKER), routing_id=GOOD.encode())) as p:
        reply = await p.request(m.Hello(ATTACKER, "rid/1"))
        spoof = await p.request(m.Hello(GOOD, "rid/1"))
    if not isinstance(reply, m.Final):
        return f"the client with a custom routing id was not served: {reply}"
    hello = decode_result(reply.kind, reply.result)
    if not isinstance(hello, HelloResult) or hello.tenant != ATTACKER:
        return f"identity taken from the routing id: {hello}"
    return None if isinstance(spoof, m.Error) and spoof.code == "forbidden" else f"spoof got {spoof}"


async def routing_id_collision(arena: Arena) -> str | None:
    """Two connections claim one routing id: the second never receives the first one's replies."""
    keys = arena.rig.keys
    async with arena.probe(ProbeOptions(keys(GOOD), routing_id=b"victim")) as victim:
        await victim.barrier()
        async with arena.probe(ProbeOptions(keys(ATTACKER), routing_id=b"victim")) as thief:
            await thief.send(encode(m.Ping(), rid=os.urandom(16)).frames)
            rid = os.urandom(16)
            reply = await victim.request(m.Query(GOOD, "mine?", max_new_tokens=2), rid=rid, timeout_s=60)
            await victim.barrier()
            stolen = thief.replies.get(rid)
    if not isinstance(reply, m.Final):
        return f"the first owner of the routing id got {reply}"
    return None if not stolen else "the second connection received the first one's reply"


async def routing_id_like_generated(arena: Arena) -> str | None:
    """Routing ids shaped like the ones libzmq generates (0x00 + counter) do not hijack peers."""
    assert arena.good is not None
    rid = os.urandom(16)
    thieves = [
        arena.probe(ProbeOptions(arena.rig.keys(ATTACKER), routing_id=b"\x00" + k.to_bytes(4, "big")))
        for k in range(1, 9)
    ]
    for t in thieves:
        await t.__aenter__()
        await t.send(encode(m.Ping(), rid=os.urandom(16)).frames)
    try:
        reply = await arena.good.request(m.Query(GOOD, "still mine?", max_new_tokens=2), rid=rid, timeout_s=60)
        await arena.good.barrier()
        stolen = any(t.replies.get(rid) for t in thieves)
    finally:
        for t in thieves:
            await t.__aexit__(None, None, None)
    if not isinstance(reply, m.Final):
        return f"the well-behaved tenant got {reply}"
    return "a forged routing id received another tenant's reply" if stolen else None


def auth_cases() -> list[Case]:
    g = "auth"
    refused = "handshake refused, no reply"
    return [
        Scenario("auth_null_client", g, refused, null_client),
        Scenario("auth_plain_client", g, refused, plain_client),
        Scenario("auth_unknown_key", g, refused + ", ZAP denial counted", unknown_key),
        Scenario("auth_wrong_server_key", g, refused, wrong_server_key),
        Scenario("auth_raw_tcp_garbage", g, "connection closed", tcp_garbage),
        Scenario("auth_http_request", g, "connection closed", http_request),
        Scenario(
            "auth_revoked_while_connected", g, "403, counted drops, new handshake refused", revoked_while_connected
        ),
        Scenario("auth_spoofed_twin_hello", g, "error forbidden", spoofed_hello),
        Scenario("auth_spoofed_twin_state", g, "error forbidden", spoofed_state),
        Scenario("auth_spoofed_sub_twin", g, "error forbidden", spoofed_sub_twin),
        Scenario("auth_spoofed_stats", g, "own counters only", spoofed_stats),
        Scenario("auth_fetch_other_tenants_rid", g, "error unknown_rid", fetch_other_tenants_rid),
        Scenario("auth_routing_id_named_after_tenant", g, "identity from the key only", routing_id_named_after_tenant),
        Scenario("auth_routing_id_collision", g, "no reply reaches the second claimant", routing_id_collision),
        Scenario("auth_routing_id_like_generated", g, "no reply reaches forged ids", routing_id_like_generated),
    ]


async def run_part(work: Path, cache_dir: Path | None, *, base: str = "tiny") -> ChaosCounts:
    cache = cache_dir or default_cache_dir(os.environ)
    async with GatewayRig(work / "auth", cache, base=base) as gw, Arena(gw) as arena:
        results = await run_cases(arena, auth_cases())
        return counts(arena, results)
