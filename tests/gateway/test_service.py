"""The gateway over real sockets (CURVE on 127.0.0.1, ZAP, SQLite, the tiny model in ONNX Runtime)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest
import zmq
import zmq.asyncio
from twin_harness import Env, adapter_upload, make_env, running, until, upload_adapter, write_tiny_adapter

from edge.client import Reply, TwinClient
from shared.errors import Forbidden
from shared.modelspec import load_spec
from shared.protocol import DEFAULT_LIMITS, codec, encode
from shared.protocol import messages as m
from shared.protocol.results import HelloResult, QueryResult, StateAck
from shared.semantic import EntityState, encode_prompt


@pytest.fixture
def env(tmp_path: Path, tiny_model: Path, model_cache: Path) -> Env:
    return make_env(tmp_path, model_cache)


def state_text(twin: str, brightness: int, share_temp: float = 21.5) -> str:
    return encode_prompt(
        "K",
        [
            EntityState(f"light.{twin}_kitchen_ceiling", "on", (("brightness", brightness),)),
            EntityState(f"sensor.{twin}_living_room_temperature", f"{share_temp}"),
        ],
        twin,
    )


async def upload_state(client: TwinClient, twin: str, seq: int, share: str = "private", brightness: int = 128) -> Reply:
    msg = m.StateUpload(twin, seq, 1_000 + seq, "key", state_text(twin, brightness), share)
    return (await client.request(msg)).raise_for_error()


async def test_hello_state_and_twin_query(env: Env) -> None:
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home1")) as c:
        hello = (await c.request(m.Hello("home1", "test/1"))).raise_for_error()
        assert isinstance(hello.result, HelloResult)
        assert hello.result.tenant == "home1" and hello.result.adapter_version == 0
        ack = await upload_state(c, "home1", 1)
        assert isinstance(ack.result, StateAck) and ack.result.stored
        reply = (
            await c.request(m.Query("home1", "How bright is the kitchen ceiling light?", max_new_tokens=4))
        ).raise_for_error()
        assert isinstance(reply.message, m.Final)
        assert isinstance(reply.result, QueryResult)
        assert [r.seq for r in reply.result.used] == [1]
        assert reply.message.acct.tokens_out >= 1
        facts = await c.request(m.Query("home1", "home1 kitchen ceiling light: model?", 4, context="none"))
        assert isinstance(facts.result, QueryResult) and facts.result.used == ()  # the adapter alone
        assert facts.message.acct.tokens_in < reply.message.acct.tokens_in  # type: ignore[union-attr]
        hello2 = (await c.request(m.Hello("home1", "test/1"))).raise_for_error()
        assert isinstance(hello2.result, HelloResult) and hello2.result.last_state_seq == 1


async def test_unknown_key_and_null_client_are_refused_others_served(env: Env) -> None:
    async with running(env.cfg) as gw:
        async with TwinClient(gw.endpoint, env.client_keys("mallory")) as bad:
            with pytest.raises(Forbidden):
                await bad.request(m.Ping(), timeout_s=10)
        ctx = zmq.asyncio.Context()
        null = ctx.socket(zmq.DEALER)
        null.linger = 0
        null.connect(gw.endpoint)
        await null.send_multipart(encode(m.Ping(), rid=os.urandom(16)).frames)
        async with TwinClient(gw.endpoint, env.client_keys("home2")) as good:
            assert isinstance((await good.request(m.Ping())).message, m.Pong)
        assert await null.poll(200) == 0  # the NULL client never gets an answer
        null.close(linger=0)
        ctx.term()
        assert gw.zap is not None and gw.zap.counters.denied >= 1


async def test_spoofed_twin_is_forbidden(env: Env) -> None:
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home1")) as c:
        reply = await c.request(m.StateUpload("home2", 1, 1, "key", state_text("home2", 10)))
        assert isinstance(reply.message, m.Error) and reply.message.status == 403


async def test_revoked_key_is_cut_off_on_its_next_message(env: Env) -> None:
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home2")) as c:
        assert isinstance((await c.request(m.Ping())).message, m.Pong)
        (env.cfg.server.tenants_dir / "home2.key").unlink()
        gw.tenants.reload()
        reply = await c.request(m.Hello("home2", "x"))
        assert isinstance(reply.message, m.Error) and reply.message.code == "forbidden"


async def test_duplicates_replay_and_execute_once(env: Env) -> None:
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home1")) as c:
        rid = os.urandom(16)
        msg = m.StateUpload("home1", 7, 1, "key", state_text("home1", 50))
        first = (await c.request(msg, rid=rid)).raise_for_error()
        second = (await c.request(msg, rid=rid)).raise_for_error()
        assert isinstance(first.message, m.Final) and not first.message.replayed
        assert isinstance(second.message, m.Final) and second.message.replayed
        assert first.result == second.result
        other = (await c.request(msg)).raise_for_error()  # same seq, new rid: stored once
        assert isinstance(other.result, StateAck) and not other.result.stored


async def test_fetch_after_reconnect(env: Env) -> None:
    async with running(env.cfg) as gw:
        rid = os.urandom(16)
        async with TwinClient(gw.endpoint, env.client_keys("home1")) as c:
            await upload_state(c, "home1", 1)
            (await c.request(m.Query("home1", "kitchen light?", max_new_tokens=3), rid=rid)).raise_for_error()
        async with TwinClient(gw.endpoint, env.client_keys("home1")) as again:
            fetched = await again.fetch(rid)
            assert isinstance(fetched.message, m.Final) and fetched.message.replayed
            unknown = await again.fetch(os.urandom(16))
            assert isinstance(unknown.message, m.Error) and unknown.message.status == 404
        async with TwinClient(gw.endpoint, env.client_keys("home2")) as thief:
            stolen = await thief.fetch(rid)  # another tenant's rid does not exist for home2
            assert isinstance(stolen.message, m.Error) and stolen.message.status == 404


async def test_bad_input_gets_codes_and_the_gateway_keeps_serving(env: Env) -> None:
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home1")) as c:
        assert c._sock is not None
        rid = os.urandom(16)
        (frame,) = encode(m.Ping(), rid=rid).frames
        await c._sock.send_multipart([frame, frame])  # two frames: no trustworthy rid, dropped and counted
        head, _ = codec._split(frame, DEFAULT_LIMITS)
        waiter = c._expect(rid)
        await c._sock.send_multipart([codec.pack_frame(b"LTW1\x06", bytes(head), b"\xc1")])  # bad body: 400
        reply = await asyncio.wait_for(waiter, 10)
        assert isinstance(reply.message, m.Error) and reply.message.code == "bad_schema"
        too_many = await c.request(m.Query("home1", "q", max_new_tokens=100_000))
        assert isinstance(too_many.message, m.Error) and too_many.message.status == 400
        assert isinstance((await c.request(m.Ping())).message, m.Pong)
        dropped = gw.registry.render()
        assert 'llmtwin_gateway_dropped_total{tenant="home1",code="frame_count"} 1' in dropped


async def test_inter_twin_query_uses_only_shared_state(env: Env) -> None:
    async with running(env.cfg) as gw:
        for twin, share in (("home2", "group"), ("home3", "private")):
            async with TwinClient(gw.endpoint, env.client_keys(twin)) as c:
                await upload_state(c, twin, 1, share=share, brightness=255)
        async with TwinClient(gw.endpoint, env.client_keys("home1")) as c:
            await upload_state(c, "home1", 1, brightness=0)
            reply = (
                await c.request(m.InterQuery("home1", "What is the average light brightness?", max_new_tokens=3))
            ).raise_for_error()
        assert isinstance(reply.result, QueryResult)
        twins = {r.twin_id for r in reply.result.used}
        assert "home2" in twins and "home3" not in twins
        avg = {a.name: a for a in reply.result.aggregates}["average light brightness (lights on)"]
        assert avg.n == 2 and avg.value == 50.0  # home1 at 0 %, home2 at 100 %; home3 kept private


SCORES_WORSE = {"state_accuracy": 0.08, "state_accuracy_base": 0.54, "state_accuracy_floor": 0.42}
SCORES_LEVEL = {"state_accuracy": 0.54, "state_accuracy_base": 0.54, "state_accuracy_floor": 0.42}


async def test_state_questions_go_to_the_base_model_while_the_adapter_reads_state_worse(
    env: Env, tiny_model: Path, tmp_path: Path
) -> None:
    spec = load_spec(tiny_model)
    worse = adapter_upload("home1", 1, write_tiny_adapter(tmp_path / "v1", spec, 1, training=SCORES_WORSE))
    level = adapter_upload("home1", 2, write_tiny_adapter(tmp_path / "v2", spec, 2, training=SCORES_LEVEL))
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home1")) as c:
        await upload_state(c, "home1", 1)
        (await c.request(m.Query("home1", "Is the kitchen ceiling light on?", max_new_tokens=2))).raise_for_error()
        await upload_adapter(c, *worse)
        asked = [
            m.Query("home1", "How bright is the kitchen ceiling light?", max_new_tokens=2),
            m.InterQuery("home1", "What is the average light brightness?", max_new_tokens=2),
            m.Query("home1", "home1 kitchen ceiling light: model?", max_new_tokens=2, context="none"),
        ]
        state, inter, facts = [(await c.request(q)).raise_for_error().result for q in asked]
        assert isinstance(state, QueryResult) and isinstance(inter, QueryResult) and isinstance(facts, QueryResult)
        assert (state.adapter_version, state.base_only, inter.base_only) == (1, True, True)
        assert (facts.adapter_version, facts.base_only) == (1, False)  # only the adapter knows the facts
        unmatched = (await c.request(m.Query("home1", "Who are you?", max_new_tokens=2))).raise_for_error().result
        assert isinstance(unmatched, QueryResult) and unmatched.used == () and not unmatched.base_only
        assert gw.residency is not None
        assert (gw.residency.stats.misses, gw.residency.stats.hits) == (1, 1)  # v1 ran the last two alone
        await upload_adapter(c, *level)
        again = (await c.request(asked[0])).raise_for_error().result
        assert isinstance(again, QueryResult) and (again.adapter_version, again.base_only) == (2, False)
        assert gw.residency.stats.misses == 2
        metrics = gw.registry.render()
        assert 'llmtwin_gateway_answers_total{tenant="home1",reader="base_only"} 2' in metrics
        assert 'llmtwin_gateway_answers_total{tenant="home1",reader="adapter"} 3' in metrics
        assert 'llmtwin_gateway_answers_total{tenant="home1",reader="none"} 1' in metrics  # before any adapter


async def test_flood_gets_429_while_others_are_served(tmp_path: Path, tiny_model: Path, model_cache: Path) -> None:
    env = make_env(
        tmp_path,
        model_cache,
        admission="[admission]\nrate_per_s = 1.0\nburst = 2\nmax_inflight_per_tenant = 2\nqueue_cap = 64\n",
    )
    async with (
        running(env.cfg) as gw,
        TwinClient(gw.endpoint, env.client_keys("home1")) as noisy,
        TwinClient(gw.endpoint, env.client_keys("home2")) as quiet,
    ):
        flood = [noisy.request(m.Query("home1", f"q{i}", max_new_tokens=2)) for i in range(12)]
        replies = await asyncio.gather(*flood)
        codes = [r.message.code for r in replies if isinstance(r.message, m.Error)]
        assert codes.count("rate_limited") >= 8
        assert all(r.message.retry_after_ms > 0 for r in replies if isinstance(r.message, m.Error))
        ok = (await quiet.request(m.Query("home2", "hello?", max_new_tokens=2))).raise_for_error()
        assert isinstance(ok.message, m.Final)


async def test_restart_keeps_prompts_and_replies(env: Env) -> None:
    rid = os.urandom(16)
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home1")) as c:
        await c.request(m.StateUpload("home1", 3, 1, "key", state_text("home1", 9)), rid=rid)
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home1")) as c:
        replay = await c.request(m.StateUpload("home1", 3, 1, "key", state_text("home1", 9)), rid=rid)
        assert isinstance(replay.message, m.Final) and replay.message.replayed
        hello = (await c.request(m.Hello("home1", "x"))).raise_for_error()
        assert isinstance(hello.result, HelloResult) and hello.result.last_state_seq == 3


async def test_admin_endpoints(env: Env) -> None:
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home1")) as c:
        await upload_state(c, "home1", 1)
        async with aiohttp.ClientSession() as http:
            async with http.get(gw.admin_url + "/readyz") as r:
                assert r.status == 200
            async with http.get(gw.admin_url + "/metrics") as r:
                text = await r.text()
        assert 'llmtwin_gateway_bytes_total{tenant="home1",direction="in",type="state",layer="frame"}' in text
        assert "llmtwin_gateway_queue_depth" in text


async def test_in_flight_duplicate_gets_409_then_fetch_gets_the_answer(env: Env) -> None:
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home1")) as a:
        assert gw.batcher is not None
        rid = os.urandom(16)
        slow = m.Query("home1", "tell me everything", max_new_tokens=200)
        first = asyncio.ensure_future(a.request(slow, rid=rid))
        batcher = gw.batcher
        await until(lambda: bool(batcher.running or batcher.queued))  # the first copy is executing
        async with TwinClient(gw.endpoint, env.client_keys("home1")) as b:  # the device, reconnected
            dup = await b.request(slow, rid=rid)
            assert isinstance(dup.message, m.Error) and dup.message.code == "in_flight"
            reply = await b.fetch(rid)
            while isinstance(reply.message, m.Accepted):  # still running: ask again
                reply = await b.fetch(rid)
            assert isinstance(reply.message, m.Final)
        first.cancel()


async def test_expired_deadline_is_504(env: Env) -> None:
    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home1")) as c:
        late = await c.request(m.Query("home1", "quick?", max_new_tokens=200), deadline_ms=1)
        assert isinstance(late.message, m.Error) and late.message.status == 504
        assert isinstance((await c.request(m.Ping())).message, m.Pong)


async def test_query_command_line(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    from shared.cli import main

    async with running(env.cfg) as gw, TwinClient(gw.endpoint, env.client_keys("home1")) as c:
        await upload_state(c, "home1", 1)
        args = [
            "query",
            "--endpoint",
            gw.endpoint,
            "--server-key",
            str(env.keys / "server.key"),
            "--key",
            str(env.keys / "home1.key_secret"),
            "--twin",
            "home1",
            "--max-new-tokens",
            "3",
            "--json",
            "How bright is the kitchen light?",
        ]
        assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr().out
    assert '"twin_id": "home1"' in out and '"used"' in out
