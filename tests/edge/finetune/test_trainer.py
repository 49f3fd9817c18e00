"""The daemon's fine-tuning: schedule, child process, upload through the outbox to a real gateway."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import ClientSession
from edge_profile import edge_profile, free_port
from twin_harness import make_env, running, until

from edge.daemon import EdgeDaemon
from edge.finetune.child import ChildRound, ChildSettings
from edge.finetune.history import RoundHistory
from edge.finetune.history import create_schema as create_history_schema
from edge.finetune.request import RoundProgress, RoundRequest, RoundResult
from edge.outbox import Outbox
from edge.outbox import create_schema as create_outbox_schema
from edge.readings import StaticRecord
from edge.state_store import AttributePolicy, StateStore, digest
from edge.trainer import Trainer, _peak_note
from shared.commands import edge_cmd
from shared.config import EdgeConfig, load_config
from shared.config.edge import FinetuneSection
from shared.db import Database
from shared.pseudonyms import TABLE_FILE, Pseudonyms

ROUND = """enabled = true
base = "tiny"
model_cache = "{cache}"
threads = 1
max_steps = 4
max_time_s = 120.0
eval_threshold = 0.0
memory_cap_mb = 4096
lambda_h = 24.0"""
REPO = Path(__file__).resolve().parents[3]


def facts(n: int, value: str = "Aqara") -> list[StaticRecord]:
    return [StaticRecord(f"light.home1_room{i}", "manufacturer", value) for i in range(n)]


def rounds(data_dir: Path) -> list[tuple[int, str, str, str]]:
    if not (data_dir / "edge.sqlite3").exists():
        return []
    conn = sqlite3.connect(data_dir / "edge.sqlite3")
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'finetune_rounds'").fetchone():
            return []
        query = (
            "SELECT r.version, r.status, r.trigger, COALESCE(o.status, '') FROM finetune_rounds AS r "
            "LEFT JOIN outbox AS o ON o.id = r.outbox_id ORDER BY r.version"
        )
        return [(int(v), s, t, u) for v, s, t, u in conn.execute(query)]
    finally:
        conn.close()


async def test_first_round_is_trained_uploaded_served_and_train_now_adds_the_next(
    tmp_path: Path, tiny_model: Path, model_cache: Path
) -> None:
    env = make_env(tmp_path / "gw", model_cache)
    async with running(env.cfg) as gw:
        finetune = ROUND.format(cache=model_cache)
        profile = edge_profile(tmp_path, env, gw.endpoint, speed=60.0, finetune=finetune, admin_port=free_port())
        cfg = load_config(EdgeConfig, profile)
        daemon = EdgeDaemon(cfg, drain_s=5)
        task = asyncio.create_task(daemon.run())
        await until(lambda: daemon.uplink is not None and daemon.uplink.stats.served_adapter_version == 1, 180)
        assert daemon.trainer is not None and daemon.trainer.progress is not None
        assert daemon.trainer.progress.phase == "export"  # progress was followed to the end
        assert rounds(cfg.device.data_dir) == [(1, "accepted", "first round", "acked")]
        assert "fine-tune idle (adapter v1 served)" in daemon.status_line()
        async with ClientSession() as http, http.get(f"{daemon.admin_url}/status") as resp:
            status = await resp.json()
        assert status["finetune"]["rounds"][0]["upload"] == "acked"
        assert "records" not in status["finetune"]["rounds"][0]  # the facts stay in the database
        # on demand, from the command line, while the daemon keeps serving: warm-started v2
        assert await asyncio.to_thread(edge_cmd._train_now, cfg, True) == 0
        await until(lambda: daemon.uplink is not None and daemon.uplink.stats.served_adapter_version == 2, 180)
        assert [r[:3] for r in rounds(cfg.device.data_dir)][1] == (2, "accepted", "on demand")
        assert not list((cfg.device.data_dir / "finetune" / "rounds").glob("*.request.json"))  # sensitive: removed
        daemon.request_stop()
        await asyncio.wait_for(task, 30)


async def test_an_adapter_the_gateway_refuses_is_kept_and_rounds_pause_until_the_facts_change(
    tmp_path: Path, tiny_model: Path, model_cache: Path
) -> None:
    env = make_env(tmp_path / "gw", model_cache, admission="[limits]\nmax_adapter_bytes = 1024")
    async with running(env.cfg) as gw:
        profile = edge_profile(tmp_path, env, gw.endpoint, speed=60.0, finetune=ROUND.format(cache=model_cache))
        cfg = load_config(EdgeConfig, profile)
        daemon = EdgeDaemon(cfg, drain_s=5)
        task = asyncio.create_task(daemon.run())
        await until(lambda: any(r[3] == "rejected" for r in rounds(cfg.device.data_dir)), 180)
        version, status, _trigger, upload = rounds(cfg.device.data_dir)[0]
        assert (version, status, upload) == (1, "accepted", "rejected")
        assert (cfg.device.data_dir / "finetune" / "adapters" / "v1" / "adapter.onnx_adapter").exists()  # kept
        assert daemon.trainer is not None
        due = await daemon.trainer.due()
        assert due.trigger is None  # same facts, same adapter: no periodic retry
        detail = (await daemon.db.run(RoundHistory.last, "accepted")).upload_detail  # type: ignore[union-attr]
        assert "413" in detail
        daemon.request_stop()
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "edge.sqlite3")
    await database.open(StateStore.create_schema, create_outbox_schema, create_history_schema)
    yield database
    await database.close()


def trainer_for(db: Database, clock: list[float], **finetune: object) -> Trainer:
    cfg = load_config(EdgeConfig, REPO / "firmware_configs" / "smart-home-hub-x86.toml")
    section = FinetuneSection(lambda_h=24.0, static_change_threshold=0.05, **finetune)  # type: ignore[arg-type]
    return Trainer(replace(cfg, finetune=section), db, now=lambda: clock[0], speed=100.0)


async def put_facts(db: Database, records: list[StaticRecord], now: float) -> None:
    await db.run(StateStore(AttributePolicy()).put_static, records, now)


async def test_schedule_first_then_every_lambda_then_on_a_large_static_change(tmp_path: Path, db: Database) -> None:
    clock = [1000.0]
    trainer = trainer_for(db, clock)
    assert (await trainer.due()).trigger is None  # nothing to learn yet
    await put_facts(db, facts(40), clock[0])
    settling = await trainer.due()
    assert settling.trigger is None and settling.wait_s == pytest.approx(9.0)  # 15 min to settle at 100x
    clock[0] += 900
    assert (await trainer.due()).trigger == "first round"
    trained = await db.run(StateStore.static_facts)
    await db.run(RoundHistory.begin, 1, "first round", clock[0], "d1", trained)
    await db.run(RoundHistory.finish, 1, "accepted", "ok", clock[0] + 100, 0.95, None, None)
    waiting = await trainer.due()
    assert waiting.trigger is None and 0 < waiting.wait_s <= 60.0  # 24 h at 100x, capped by the next look
    clock[0] += 24 * 3600 + 101
    assert (await trainer.due()).trigger == "λ = 24 h elapsed"
    clock[0] -= 24 * 3600
    await put_facts(db, facts(1, "IKEA"), clock[0])  # 1 of 40: 2.5 %
    assert (await trainer.due()).trigger is None
    await put_facts(db, facts(4, "IKEA"), clock[0])  # 4 of 40: 10 %
    assert (await trainer.due()).trigger is None  # still settling
    clock[0] += 900
    assert (await trainer.due()).trigger == "static facts changed (10%)"


async def test_a_failed_round_is_retried_after_an_hour_not_at_once(tmp_path: Path, db: Database) -> None:
    clock = [0.0]
    trainer = trainer_for(db, clock)
    await put_facts(db, facts(10), clock[0] - 1000)
    await db.run(RoundHistory.begin, 1, "first round", 0.0, "d", facts(10))
    await db.run(RoundHistory.finish, 1, "failed", "no model", 10.0)
    assert (await trainer.due()).trigger is None
    clock[0] = 3600 + 11
    assert (await trainer.due()).trigger == "retry after a failed round"


async def test_a_round_without_a_prepared_model_fails_with_what_to_do(tmp_path: Path, db: Database) -> None:
    clock = [0.0]
    trainer = trainer_for(db, clock, model_cache=tmp_path / "empty-cache", base="smollm2-135m")
    await put_facts(db, facts(10), clock[0])
    result = await trainer.run_round("on demand")
    assert result.status == "failed" and "llmtwin model prepare --base smollm2-135m" in result.reason
    assert (await db.run(RoundHistory.last)).status == "failed"  # type: ignore[union-attr]
    assert await db.run(Outbox.counts) == {}  # nothing queued


async def test_memory_cap_fails_the_round_and_leaves_no_artifact(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "adapters"
    request = RoundRequest.from_config(
        FinetuneSection(threads=1, max_steps=50, eval_threshold=0.0),
        twin_id="home1",
        version=1,
        model_dir=str(tiny_model),
        out_dir=str(out),
        records=tuple(facts(30)),
    )
    path = tmp_path / "req.json"
    path.write_text(request.to_json())
    seen: list[RoundProgress] = []
    child = ChildRound(path, tmp_path / "res.json", tmp_path / "round.log", ChildSettings(10, 64), seen.append)
    result = await child.run()
    assert result.status == "failed" and result.reason.startswith("memory cap hit: resident")
    assert not (out / "v1").exists()
    assert not out.exists() or not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left


async def rejected(db: Database, version: int, accuracy: float, at: float, trigger: str = "first round") -> None:
    await db.run(RoundHistory.begin, version, trigger, at, "d", facts(10))
    path = f"/adapters/candidates/v{version}/adapter.onnx_adapter"
    await db.run(RoundHistory.finish, version, "rejected", "below the gate", at + 10, accuracy, path, None)


async def test_below_the_gate_but_learning_catches_up_then_returns_to_lambda(db: Database) -> None:
    clock = [0.0]
    trainer = trainer_for(db, clock, eval_threshold=0.9, catchup_pause_s=600.0, catchup_rounds=3)
    await put_facts(db, facts(10), -5000.0)
    await rejected(db, 1, 0.30, 0.0)
    assert (await trainer.due()).trigger is None  # the pause first
    clock[0] = 611.0
    assert (await trainer.due()).trigger == "catching up (accuracy 0.30 < gate 0.90)"
    assert await trainer._resume_point(None, 200, facts(10)) == "/adapters/candidates/v1/adapter.onnx_adapter"
    await rejected(db, 2, 0.45, 611.0, "catching up (accuracy 0.30 < gate 0.90)")
    clock[0] = 1300.0
    assert (await trainer.due()).trigger == "catching up (accuracy 0.45 < gate 0.90)"
    await rejected(db, 3, 0.452, 1300.0, "catching up (accuracy 0.45 < gate 0.90)")
    clock[0] = 2000.0
    assert (await trainer.due()).trigger is None  # no longer improving: back to λ
    best = "/adapters/candidates/v3/adapter.onnx_adapter"
    assert await trainer._resume_point(None, 200, facts(10)) == best


async def test_a_rejected_candidate_within_the_eval_noise_of_the_one_in_service_is_the_resume_point(
    db: Database,
) -> None:
    trainer = trainer_for(db, [0.0])
    await db.run(RoundHistory.begin, 1, "first round", 0.0, "d", facts(10))
    await db.run(RoundHistory.finish, 1, "accepted", "ok", 10.0, 0.955, "/adapters/v1/adapter.onnx_adapter", None)
    in_service = await db.run(RoundHistory.last, "accepted")
    assert await trainer._resume_point(in_service, 200, facts(10)) is None
    await rejected(db, 2, 0.95, 100.0, "every λ")  # 0.005 below, the eval's noise is 0.029
    assert await trainer._resume_point(in_service, 200, facts(10)) == "/adapters/candidates/v2/adapter.onnx_adapter"
    await rejected(db, 3, 0.90, 200.0, "every λ")  # a real drop: the newest close one stays the resume point
    assert await trainer._resume_point(in_service, 200, facts(10)) == "/adapters/candidates/v2/adapter.onnx_adapter"
    assert await trainer._resume_point(in_service, 100_000, facts(10)) is None  # on that many questions 0.005 is a drop


async def test_catching_up_stops_after_catchup_rounds(db: Database) -> None:
    clock = [0.0]
    trainer = trainer_for(db, clock, eval_threshold=0.9, catchup_pause_s=60.0, catchup_rounds=2)
    await put_facts(db, facts(10), -5000.0)
    await rejected(db, 1, 0.1, 0.0)
    await rejected(db, 2, 0.2, 100.0, "catching up (accuracy 0.10 < gate 0.90)")
    await rejected(db, 3, 0.3, 200.0, "catching up (accuracy 0.20 < gate 0.90)")
    clock[0] = 1000.0
    assert (await trainer.due()).trigger is None


async def accepted(db: Database, version: int, accuracy: float, at: float, trigger: str, digest: str = "d") -> None:
    await db.run(RoundHistory.begin, version, trigger, at, digest, facts(10))
    path = f"/adapters/v{version}/adapter.onnx_adapter"
    await db.run(RoundHistory.finish, version, "accepted", "ok", at + 10, accuracy, path, None)


async def test_past_the_gate_a_round_that_still_gains_catches_up_until_the_plateau(db: Database) -> None:
    """The paper bench's home2: 0.93 -> 0.95 -> 0.96 -> 0.95 (refused) over rounds 7-10. Each accepted
    round a point or more above the one before brings the next one after the pause instead of λ."""
    clock = [0.0]
    trainer = trainer_for(db, clock, eval_threshold=0.9, catchup_pause_s=600.0, catchup_rounds=5)
    await put_facts(db, facts(10), -5000.0)
    await accepted(db, 1, 0.93, 0.0, "first round")
    clock[0] = 700.0
    assert (await trainer.due()).trigger is None  # a first round: nothing to compare it with
    await accepted(db, 2, 0.95, 700.0, "λ = 24 h elapsed")
    clock[0] = 1400.0
    assert (await trainer.due()).trigger == "catching up (accuracy 0.95, up from 0.93)"
    await accepted(db, 3, 0.96, 1400.0, "catching up (accuracy 0.95, up from 0.93)")
    clock[0] = 2100.0
    assert (await trainer.due()).trigger == "catching up (accuracy 0.96, up from 0.95)"
    await rejected(db, 4, 0.95, 2100.0, "catching up (accuracy 0.96, up from 0.95)")
    clock[0] = 2800.0
    assert (await trainer.due()).trigger is None  # refused against the one in service: the plateau, back to λ


async def test_an_accepted_round_on_new_facts_or_without_a_gain_waits_for_lambda(db: Database) -> None:
    clock = [0.0]
    trainer = trainer_for(db, clock, eval_threshold=0.9, catchup_pause_s=60.0, catchup_rounds=5)
    await put_facts(db, facts(10), -5000.0)
    await accepted(db, 1, 0.91, 0.0, "first round", digest="before")
    await accepted(db, 2, 0.96, 100.0, "static facts changed (10%)", digest="after")  # other questions
    clock[0] = 1000.0
    assert (await trainer.due()).trigger is None
    await accepted(db, 3, 0.965, 1000.0, "λ = 24 h elapsed", digest="after")  # half a point: noise
    clock[0] = 2000.0
    assert (await trainer.due()).trigger is None


def test_the_round_log_line_names_the_peak_and_its_phase() -> None:
    phases = {"load": 900.0, "eval": 1310.4}
    assert _peak_note(RoundResult("accepted", "ok", "home1", 3, peak_rss_mb=1310.4, peak_rss_by_phase=phases)) == (
        " (peak RSS 1,310 MB, in eval)"
    )
    assert _peak_note(RoundResult("failed", "killed", "home1", 3, peak_rss_mb=1600.0)) == " (peak RSS 1,600 MB)"
    assert _peak_note(RoundResult("failed", "no result", "home1", 3)) == ""


async def test_on_pseudonyms_rounds_train_on_them_and_switching_them_on_retrains_cold(
    tmp_path: Path, db: Database
) -> None:
    env = make_env(tmp_path / "gw", tmp_path / "cache")
    clock = [100.0]
    plain = Trainer(load_config(EdgeConfig, edge_profile(tmp_path, env, "tcp://127.0.0.1:1")), db, now=lambda: clock[0])
    on = edge_profile(tmp_path, env, "tcp://127.0.0.1:1", finetune="pseudonyms = true")
    named_trainer = Trainer(load_config(EdgeConfig, on), db, now=lambda: clock[0])
    real = [
        StaticRecord("light.home1_kitchen_ceiling", "manufacturer", "Aqara"),
        StaticRecord("light.home1_kitchen_ceiling", "room", "kitchen"),  # spelled out by the name: not taught
        StaticRecord("sensor.home1_profile", "owner_name", "Ada", sensitive=True),
    ]
    named, state_ids = await named_trainer._named(real)
    table = Pseudonyms.load(tmp_path / "edge-data" / TABLE_FILE)
    fact, fake = table.facts["light.home1_kitchen_ceiling"], table.table["light.home1_kitchen_ceiling"]
    assert named == [StaticRecord(fact, "manufacturer", "Aqara"), real[2]]  # facts under the fact name
    assert state_ids == (fake, "sensor.home1_profile")  # state readings under the state names the daemon reports
    assert await plain._named(real) == (real, ())
    # a device that trained on the real names switches pseudonyms on: its facts changed, and the round
    # that follows does not warm-start from the adapter that knows the real names
    await put_facts(db, real, -5000.0)
    await db.run(RoundHistory.begin, 1, "first round", 0.0, digest(real), real)
    await db.run(RoundHistory.finish, 1, "accepted", "ok", 10.0, 0.95, "/adapters/v1/adapter.onnx_adapter", None)
    assert (await plain.due()).trigger is None
    assert str((await named_trainer.due()).trigger).startswith("static facts changed")
    assert await plain._same_objects(1, real) and not await named_trainer._same_objects(1, named)
    # nor from one that learnt the facts under the state names (pseudonyms before fact names)
    under_state_names = [StaticRecord(fake, "manufacturer", "Aqara"), real[2]]
    await db.run(RoundHistory.begin, 2, "static facts changed", 20.0, digest(under_state_names), under_state_names)
    await db.run(RoundHistory.finish, 2, "accepted", "ok", 30.0, 0.95, "/adapters/v2/adapter.onnx_adapter", None)
    assert not await named_trainer._same_objects(2, named)
