"""A device on pseudonyms, end to end: the gateway holds only pseudonymous names, and the tenant's
question, rewritten with its table, is still answered from the synced state."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from edge_profile import edge_profile
from twin_harness import make_env, running, until

from edge.daemon import EdgeDaemon
from gateway.prompts import PromptStore
from gateway.queries import relevant
from shared.cli import main
from shared.commands import query_cmd
from shared.config import EdgeConfig, load_config
from shared.protocol.results import QueryResult
from shared.pseudonyms import KEY_FILE, TABLE_FILE, Pseudonyms
from shared.templates import object_name

TWIN = "home1"


def gateway_rows(db: Path) -> tuple[list[str], list[str]]:
    conn = sqlite3.connect(db)
    try:
        texts = [str(r[0]) for r in conn.execute("SELECT text FROM prompts WHERE twin_id = ?", (TWIN,))]
        ids = [str(r[0]) for r in conn.execute("SELECT entity_id FROM entity_state WHERE twin_id = ?", (TWIN,))]
        return texts, ids
    finally:
        conn.close()


async def test_the_gateway_sees_pseudonyms_and_the_tenant_s_question_still_finds_its_state(
    tmp_path: Path,
    tiny_model: Path,
    model_cache: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = make_env(tmp_path / "gw", model_cache)
    async with running(env.cfg) as gw:
        profile = edge_profile(tmp_path, env, gw.endpoint, finetune="enabled = false\npseudonyms = true")
        cfg = load_config(EdgeConfig, profile)
        daemon = EdgeDaemon(cfg, drain_s=5)
        task = asyncio.create_task(daemon.run())
        await until(lambda: daemon.uplink is not None and daemon.uplink.stats.acked >= 3)
        names = Pseudonyms.load(cfg.device.data_dir / TABLE_FILE)
        light = next(e for e in sorted(names.table) if e.startswith("light."))
        question = f"Is the {object_name(light).removeprefix('home1 ')} on?"
        sent = names.hide(question)
        assert sent != question and object_name(names.table[light]).removeprefix("home1 ") in sent
        argv = ["query", "--config", str(profile), "--twin", TWIN, "--max-new-tokens", "3", "--json", question]
        assert await asyncio.to_thread(main, argv) == 0  # the tenant's CLI: its own event loop, its own socket
        assert json.loads(capsys.readouterr().out)["used"]  # answered from the synced state
        words = light.partition("_")[2].split("_")  # the light's own words, worded otherwise: sent, and said so
        otherwise = [*argv[:-1], f"Is the lamp of the {' '.join(reversed(words))} on?"]
        assert await asyncio.to_thread(main, otherwise) == 0
        note = capsys.readouterr().err
        assert "went to the gateway as written" in note and object_name(light).removeprefix("home1 ") in note
        # a static fact, for the adapter alone: sent under the light's fact name, which keeps no domain or kind
        asked: list[str] = []
        ask = query_cmd._ask

        async def spy(args: argparse.Namespace, *rest: Any) -> QueryResult:
            asked.append(args.question)
            return await ask(args, *rest)

        monkeypatch.setattr(query_cmd, "_ask", spy)
        fact = f"What is the wattage of the {object_name(light).removeprefix('home1 ')}?"
        assert await asyncio.to_thread(main, [*argv[:-1], "--facts", fact]) == 0
        assert asked == [f"What is the wattage of the {object_name(names.facts[light]).removeprefix('home1 ')}?"]
        assert " light" not in asked[0] and "went to the gateway as written" not in capsys.readouterr().err
        wrong = tmp_path / "other.json"
        Pseudonyms("home2", {}).save(wrong)
        assert main([*argv[:-1], "--names", str(wrong), question]) == 2  # another twin's table: refused
        assert "not twin 'home1'" in capsys.readouterr().out
        daemon.request_stop()
        await asyncio.wait_for(task, 30)
    conn = sqlite3.connect(env.cfg.storage.data_dir / "gateway.sqlite3")
    try:
        states = PromptStore.latest_state(conn, TWIN)
    finally:
        conn.close()
    # what the gateway picks for the question as the CLI sent it: that one light, by its pseudonym
    assert [s.entity.entity_id for s in relevant(states, sent)] == [names.table[light]]
    texts, ids = gateway_rows(env.cfg.storage.data_dir / "gateway.sqlite3")
    assert texts and ids and set(ids) <= {*names.table.values(), "sensor.home1_profile"}  # the home keeps its name
    bodies = {e.partition(".")[2].removeprefix("home1_") for e in names.table}  # "kitchen_ceiling" ...
    leaked = [b for b in bodies for t in texts if b in t or b.replace("_", " ") in t]
    assert not leaked  # no object's own words reached the gateway, in the wire's form or spelled out
    assert (cfg.device.data_dir / KEY_FILE).stat().st_mode & 0o077 == 0
