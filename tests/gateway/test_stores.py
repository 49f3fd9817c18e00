"""The prompt database and the idempotency table on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway import idempotency, prompts
from gateway.idempotency import IdempotencyTable, ReplyStore, State, StoredReply, cacheable
from gateway.prompts import PromptStore, Sharing
from shared.db import connect
from shared.errors import SemanticError
from shared.protocol.messages import StateUpload
from shared.semantic import EntityState, encode_prompt


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    c = connect(tmp_path / "g.sqlite3")
    prompts.create_schema(c)
    idempotency.create_schema(c)
    return c


def upload(
    seq: int,
    kind: str,
    states: list[EntityState],
    share: str = "private",
    twin: str = "home1",
    ts: int | None = None,
) -> StateUpload:
    text = encode_prompt(kind, states, twin)  # type: ignore[arg-type]
    wire_kind = "key" if kind == "K" else "delta"
    return StateUpload(twin, seq, ts if ts is not None else seq * 1000, wire_kind, text, share)  # type: ignore[arg-type]


LIGHT = "light.home1_kitchen"
TEMP = "sensor.home1_hall_temperature"


def test_keyframe_and_deltas_give_latest_state(conn: sqlite3.Connection) -> None:
    assert PromptStore.put(
        conn, upload(1, "K", [EntityState(LIGHT, "on", (("brightness", 10),)), EntityState(TEMP, "20.5")]), 0
    )
    assert PromptStore.put(conn, upload(2, "D", [EntityState(LIGHT, "on", (("color_temp", 300),))]), 0)
    state = {s.entity.entity_id: s for s in PromptStore.latest_state(conn, "home1")}
    assert state[LIGHT].entity.attrs() == {"brightness": 10, "color_temp": 300}
    assert state[LIGHT].seq == 2 and state[TEMP].seq == 1
    assert PromptStore.entity(conn, "home1", TEMP) is not None
    assert PromptStore.last_seq(conn, "home1") == 2


def test_duplicates_and_older_prompts_never_win(conn: sqlite3.Connection) -> None:
    PromptStore.put(conn, upload(5, "D", [EntityState(LIGHT, "off")]), 0)
    assert not PromptStore.put(conn, upload(5, "D", [EntityState(LIGHT, "on")]), 0)  # duplicate seq
    assert PromptStore.put(conn, upload(4, "D", [EntityState(LIGHT, "on")]), 0)  # late arrival
    entity = PromptStore.entity(conn, "home1", LIGHT)
    assert entity is not None and entity.entity.state == "off" and entity.seq == 5


def test_keyframe_drops_entities_it_no_longer_lists(conn: sqlite3.Connection) -> None:
    PromptStore.put(conn, upload(1, "K", [EntityState(LIGHT, "on"), EntityState(TEMP, "20")]), 0)
    PromptStore.put(conn, upload(2, "K", [EntityState(TEMP, "21")]), 0)
    assert [s.entity.entity_id for s in PromptStore.latest_state(conn, "home1")] == [TEMP]


def test_unparseable_or_inconsistent_prompt_writes_nothing(conn: sqlite3.Connection) -> None:
    bad = StateUpload("home1", 1, 1, "delta", "Z not a prompt", "private")
    with pytest.raises(SemanticError):
        PromptStore.put(conn, bad, 0)
    liar = StateUpload("home1", 1, 1, "delta", encode_prompt("K", [EntityState(LIGHT, "on")], "home1"))
    with pytest.raises(SemanticError, match="kind"):
        PromptStore.put(conn, liar, 0)
    assert PromptStore.count(conn, "home1") == 0


def test_sharing_scopes(conn: sqlite3.Connection) -> None:
    for twin, share in (("home2", "group"), ("home3", "region"), ("home4", "private")):
        PromptStore.put(conn, upload(1, "K", [EntityState(f"light.{twin}_x", "on")], share, twin), 0)
    sharing = Sharing({"g": ("home1", "home2", "home3", "home4")}, {"r": ("home1", "home3")})
    circle = sharing.circle("home1", "group")
    assert circle == ("home2", "home3", "home4")
    group = {s.twin_id for s in PromptStore.shared_states(conn, circle, "group")}
    assert group == {"home2", "home3"}  # region-shared is visible to the group too; private never
    region = {s.twin_id for s in PromptStore.shared_states(conn, sharing.circle("home1", "region"), "region")}
    assert region == {"home3"}
    assert sharing.circle("nobody", "group") == ()


def test_retention_keeps_the_latest_keyframe(conn: sqlite3.Connection) -> None:
    PromptStore.put(conn, upload(1, "K", [EntityState(LIGHT, "on")], ts=1000), 0)
    PromptStore.put(conn, upload(2, "D", [EntityState(LIGHT, "off")], ts=2000), 0)
    PromptStore.put(conn, upload(3, "K", [EntityState(LIGHT, "off")], ts=3000), 0)
    PromptStore.put(conn, upload(4, "D", [EntityState(LIGHT, "on")], ts=4000), 0)
    assert PromptStore.prune(conn, older_than_ms=10_000) == 2  # seq 1, 2; keyframe 3 and later stay
    assert PromptStore.count(conn, "home1") == 2


def test_idempotency_states_and_persistence(conn: sqlite3.Connection) -> None:
    table = IdempotencyTable(max_done=2)
    assert table.lookup("t", b"r1") == (State.NEW, None)
    table.begin("t", b"r1", b"peerA")
    assert table.lookup("t", b"r1") == (State.IN_FLIGHT, None)
    table.redirect("t", b"r1", b"peerB")
    assert table.peer("t", b"r1") == b"peerB"
    reply = StoredReply(0x83, b"\x80")
    table.finish("t", b"r1", reply)
    ReplyStore.put(conn, "t", b"r1", reply, 5)
    assert table.lookup("t", b"r1") == (State.DONE, reply)
    assert table.lookup("other", b"r1") == (State.NEW, None)  # keyed by tenant too
    for i in range(3):
        table.finish("t", bytes([i]), reply)
    assert table.lookup("t", b"r1")[0] is State.NEW  # evicted from memory ...
    assert ReplyStore.get(conn, "t", b"r1") == reply  # ... but kept on disk
    table.begin("t", b"r9", b"p")
    table.finish("t", b"r9", None)  # not cacheable: forgotten, a retry executes
    assert table.lookup("t", b"r9") == (State.NEW, None)
    assert ReplyStore.prune(conn, older_than_ms=6) == 1


@pytest.mark.parametrize(
    ("status", "ok"), [(400, True), (403, True), (409, False), (429, False), (503, False)]
)
def test_cacheable(status: int, ok: bool) -> None:
    assert cacheable(status) is ok
