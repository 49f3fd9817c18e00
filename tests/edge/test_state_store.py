"""The state store on a real SQLite file: static vs dynamic split, sensitivity, history, digests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.readings import Reading, StaticRecord
from edge.state_store import (
    DEFAULT_STATIC_ATTRIBUTES,
    AttributePolicy,
    StateStore,
    change_fraction,
    digest,
    split,
)
from shared.config.edge import StateSection
from shared.db import Database, connect
from shared.scenario import generate
from shared.semantic import EntityState

POLICY = AttributePolicy.from_config(StateSection(sensitive_attributes=("door_code", "alarm_pin")))
LIGHT = "light.home1_kitchen_ceiling"
PROFILE = "sensor.home1_profile"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = connect(tmp_path / "state.db")
    StateStore.create_schema(c)
    yield c
    c.close()


@pytest.fixture
def store() -> StateStore:
    return StateStore(POLICY)


def light(ts: float, state: str | None = "on", **attrs: object) -> Reading:
    return Reading(LIGHT, state, attrs, ts, "test")  # type: ignore[arg-type]


def test_the_file_is_in_wal_mode(conn: sqlite3.Connection) -> None:
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_static_attributes_are_split_off_into_facts(conn: sqlite3.Connection, store: StateStore) -> None:
    store.apply(
        conn, light(0, friendly_name="Kitchen ceiling", supported_color_modes=("brightness",), brightness=120)
    )
    assert StateStore.current(conn) == {LIGHT: EntityState(LIGHT, "on", (("brightness", 120),))}
    facts = {(f.attribute, f.value) for f in StateStore.static_facts(conn)}
    assert facts == {("friendly_name", "Kitchen ceiling"), ("supported_color_modes", ("brightness",))}


def test_config_static_attributes_extend_the_defaults(conn: sqlite3.Connection) -> None:
    policy = AttributePolicy.from_config(StateSection(static_attributes=("wattage_w",)))
    StateStore(policy).apply(conn, light(0, wattage_w=9.5, brightness=3))
    assert StateStore.current(conn)[LIGHT].attrs() == {"brightness": 3}
    assert [f.attribute for f in StateStore.static_facts(conn)] == ["wattage_w"]


def test_sensitive_attributes_never_reach_dynamic_state(
    conn: sqlite3.Connection, store: StateStore, tmp_path: Path
) -> None:
    # door_code: sensitive by config; owner_name: sensitive because a scenario fact says so
    store.put_static(conn, [StaticRecord(PROFILE, "owner_name", "Ada Quux", sensitive=True)])
    reading = Reading(
        PROFILE, "home", {"door_code": "424242", "owner_name": "Ada Quux", "occupants_home": 2}, 5.0
    )
    assert store.apply(conn, reading)
    assert StateStore.current(conn)[PROFILE].attrs() == {"occupants_home": 2}
    assert [e.state.attrs() for e in StateStore.history(conn, PROFILE, 0)] == [{"occupants_home": 2}]
    dynamic = conn.execute("SELECT attrs FROM dynamic_state UNION ALL SELECT attrs FROM history").fetchall()
    assert not any("424242" in row[0] or "Ada Quux" in row[0] for row in dynamic)
    kept = {f.attribute: f for f in StateStore.static_facts(conn)}
    assert kept["door_code"].sensitive and kept["door_code"].value == "424242"  # for local fine-tuning
    assert store.sensitive_attributes(conn) == {"door_code", "alarm_pin", "owner_name"}


def test_config_marks_a_fact_sensitive_whatever_the_record_says(
    conn: sqlite3.Connection, store: StateStore
) -> None:
    store.put_static(conn, [StaticRecord(PROFILE, "alarm_pin", "1234", sensitive=False)])
    assert StateStore.static_facts(conn)[0].sensitive


def test_apply_reports_changes_and_history_only_grows_on_change(
    conn: sqlite3.Connection, store: StateStore
) -> None:
    assert store.apply(conn, light(1, brightness=100))
    assert not store.apply(conn, light(2, brightness=100))  # same state again (a poll)
    assert store.apply(conn, light(3, brightness=0))  # zero is a value, not "no value"
    assert store.apply(conn, light(4, "off", brightness=None))  # None: the attribute is gone
    assert not store.apply(conn, light(3.5, brightness=7))  # older than what we hold: stale
    history = StateStore.history(conn, LIGHT, 0)
    assert [(h.ts, h.state.state, h.state.attrs()) for h in history] == [
        (1, "on", {"brightness": 100}),
        (3, "on", {"brightness": 0}),
        (4, "off", {}),
    ]
    assert [h.ts for h in StateStore.history(conn, LIGHT, 2, until=3)] == [3]


def test_unavailable_entities_have_no_attributes(conn: sqlite3.Connection, store: StateStore) -> None:
    store.apply(conn, light(1, brightness=100))
    store.apply(conn, light(2, None, brightness=100))
    assert StateStore.current(conn)[LIGHT] == EntityState(LIGHT, None)
    store.apply(conn, light(3, "unavailable"))  # HA's spelling
    assert StateStore.current(conn)[LIGHT].state is None


def test_non_finite_and_list_values_are_made_encodable() -> None:
    entity, _ = split(
        Reading("sensor.x_y", "1", {"a": float("nan"), "b": ("x", 1, True)}), POLICY, frozenset()
    )
    assert entity.attrs() == {"b": "x, 1, true"}


def test_prune_drops_old_history_but_keeps_the_current_state(
    conn: sqlite3.Connection, store: StateStore
) -> None:
    for ts in range(10):
        store.apply(conn, light(ts, brightness=ts))
    assert StateStore.prune(conn, 7) == 7
    assert [h.ts for h in StateStore.history(conn, LIGHT, 0)] == [7, 8, 9]
    assert StateStore.current(conn)[LIGHT].attrs() == {"brightness": 9}


def test_digest_is_stable_and_moves_with_static_changes(conn: sqlite3.Connection, store: StateStore) -> None:
    facts = [StaticRecord(LIGHT, "model", "Dimmer 2"), StaticRecord(LIGHT, "wattage_w", 9.5)]
    assert store.put_static(conn, facts) == 2
    first = store.static_digest(conn)
    assert first == digest(reversed(facts))  # order-free
    assert store.put_static(conn, facts) == 0 and store.static_digest(conn) == first
    store.put_static(conn, [StaticRecord(LIGHT, "wattage_w", 12.0)])
    second = store.static_digest(conn)
    assert second != first
    store.put_static(conn, [StaticRecord(LIGHT, "model", "Dimmer 2", sensitive=True)])
    assert store.static_digest(conn) not in (first, second)
    assert store.static_change_fraction(conn, facts) == 1.0  # both facts differ now


def test_change_fraction_counts_added_removed_and_changed_facts() -> None:
    base = [StaticRecord(f"sensor.h_{i}", "model", f"m{i}") for i in range(10)]
    assert change_fraction(base, base) == 0.0
    changed = [*base[:9], StaticRecord("sensor.h_9", "model", "other")]
    assert change_fraction(base, changed) == pytest.approx(0.1)
    assert change_fraction(base, [*base, StaticRecord("sensor.h_10", "model", "x")]) == pytest.approx(1 / 11)
    assert change_fraction(base, base[:5]) == pytest.approx(0.5)
    assert change_fraction([], []) == 0.0


def test_scenario_facts_round_trip_and_survive_a_reopen(tmp_path: Path) -> None:
    scenario = generate(7, homes=1, duration_s=600)
    facts = [StaticRecord(f.entity_id, f.attribute, f.value, f.sensitive) for f in scenario.static_facts()]
    store = StateStore(AttributePolicy())
    c = connect(tmp_path / "s.db")
    StateStore.create_schema(c)
    store.put_static(c, facts)
    store.apply_many(c, [Reading(ch.entity_id, ch.state, ch.attributes, ch.ts_s) for ch in scenario.trace])
    before = (StateStore.static_facts(c), store.static_digest(c), StateStore.current(c))
    c.close()
    c = connect(tmp_path / "s.db")
    assert (StateStore.static_facts(c), store.static_digest(c), StateStore.current(c)) == before
    stored = StateStore.static_facts(c)
    assert set(facts) <= set(stored)  # sensitive ones included: they train the local adapter
    assert {f.attribute for f in set(stored) - set(facts)} <= DEFAULT_STATIC_ATTRIBUTES  # from HA states
    c.close()


async def test_usable_from_the_database_thread(tmp_path: Path, store: StateStore) -> None:
    db = Database(tmp_path / "edge.db")
    await db.open(StateStore.create_schema)
    try:
        assert await db.run(store.apply_many, [light(1, brightness=5), light(2, brightness=6)]) == 2
        assert (await db.run(StateStore.current))[LIGHT].attrs() == {"brightness": 6}
    finally:
        await db.close()
