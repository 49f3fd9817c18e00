"""The edge's state store: static facts and dynamic entity state in one SQLite file.

The paper's split lives here. *Static* facts (what a device is, its ranges, the owner's secrets)
feed the λ-periodic fine-tune and never go on the wire as prompts; *dynamic* state (readings,
on/off, levels) feeds the compressor. Which attributes of a reading are static or sensitive is
policy (``[state]`` in the device profile, plus the scenario's per-fact markings), so a source never
decides it. A sensitive attribute is kept only as a sensitive static fact: it never enters the
dynamic tables, so nothing that reads ``current()`` or ``history()`` can leak it.

Like the outbox and the gateway's prompt DB, :class:`StateStore` holds no connection: its methods
take the ``sqlite3.Connection`` that the daemon's database thread owns (``shared.db.Database.run``),
and tests call them on a connection directly. A :class:`Reading` is a full observation, the way a
Home Assistant state object is: attributes it does not carry are gone.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edge.readings import AttrValue, Reading, StaticRecord
from shared.config.edge import StateSection
from shared.db import transaction
from shared.semantic import EntityState, Value

SCHEMA = """
CREATE TABLE IF NOT EXISTS static_facts (
    entity_id TEXT NOT NULL,
    attribute TEXT NOT NULL,
    value TEXT NOT NULL,
    sensitive INTEGER NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (entity_id, attribute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dynamic_state (
    entity_id TEXT PRIMARY KEY,
    state TEXT,
    attrs TEXT NOT NULL,
    ts REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    entity_id TEXT NOT NULL,
    ts REAL NOT NULL,
    state TEXT,
    attrs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_entity ON history (entity_id, ts);
CREATE INDEX IF NOT EXISTS history_by_time ON history (ts);
"""

# Home Assistant attributes that describe a device rather than its state: static whatever the
# config says, so a start-up state object does not put "friendly_name" into every prompt.
DEFAULT_STATIC_ATTRIBUTES = frozenset({
    "friendly_name", "device_class", "unit_of_measurement", "state_class", "icon", "entity_picture",
    "attribution", "supported_features", "supported_color_modes", "min_mireds", "max_mireds",
    "min_color_temp_kelvin", "max_color_temp_kelvin", "min_temp", "max_temp", "min_humidity",
    "max_humidity", "target_temp_step", "hvac_modes", "preset_modes", "fan_modes", "swing_modes",
    "source_list", "sound_mode_list", "effect_list", "options", "editable",
})  # fmt: skip

UNAVAILABLE_STATES = frozenset({"unavailable"})  # HA's spelling of "no value"; a Reading uses None


@dataclass(frozen=True, slots=True)
class AttributePolicy:
    """Which attribute names are static (split off to facts) and which are sensitive (never sent)."""

    static: frozenset[str] = DEFAULT_STATIC_ATTRIBUTES
    sensitive: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, section: StateSection) -> AttributePolicy:
        return cls(
            static=DEFAULT_STATIC_ATTRIBUTES | frozenset(section.static_attributes),
            sensitive=frozenset(section.sensitive_attributes),
        )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    ts: float
    state: EntityState


# ------------------------------------------------------------------------------------------------
# pure splitting (shared with the in-memory replay harness)


def split(
    reading: Reading, policy: AttributePolicy, sensitive: frozenset[str]
) -> tuple[EntityState, list[StaticRecord]]:
    """A reading's dynamic state (canonical: attributes sorted, ``None`` dropped) and its static facts.

    ``sensitive`` is every sensitive attribute name (policy plus facts marked sensitive); those
    attributes come back only as sensitive static records. An unavailable entity has no attributes.
    """
    facts: list[StaticRecord] = []
    dynamic: dict[str, Value] = {}
    for name, raw in reading.attributes.items():
        if name in sensitive or name in policy.static:
            value = _fact_value(raw)
            if value is not None:
                facts.append(StaticRecord(reading.entity_id, name, value, sensitive=name in sensitive))
            continue
        converted = _dynamic_value(raw)
        if converted is not None:
            dynamic[name] = converted
    state = None if reading.state is None or reading.state in UNAVAILABLE_STATES else reading.state
    attrs = tuple(sorted(dynamic.items())) if state is not None else ()
    return EntityState(reading.entity_id, state, attrs), facts


def _dynamic_value(raw: AttrValue) -> Value:
    if isinstance(raw, tuple):
        return ", ".join(_text(x) for x in raw if x is not None)
    if isinstance(raw, float) and not math.isfinite(raw):
        return None  # a NaN reading is no reading; the prompt format has no NaN either
    return raw


def _fact_value(raw: AttrValue) -> str | int | float | bool | tuple[str, ...] | None:
    if isinstance(raw, tuple):
        return tuple(_text(x) for x in raw if x is not None)
    if isinstance(raw, float) and not math.isfinite(raw):
        return None
    return raw


def _text(x: str | int | float | bool) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    return str(x)


# ------------------------------------------------------------------------------------------------
# static facts: digest and change fraction


def fact_key(record: StaticRecord) -> tuple[str, str]:
    return record.entity_id, record.attribute


def _canonical(record: StaticRecord) -> str:
    """One line per fact; tuples as JSON lists so ("a",) and "a" differ, and the flag is included."""
    value = list(record.value) if isinstance(record.value, tuple) else record.value
    return json.dumps([record.entity_id, record.attribute, value, record.sensitive], ensure_ascii=False)


def digest(records: Iterable[StaticRecord]) -> str:
    """A stable hash of a set of facts (order-free), for "has the static state changed?"."""
    h = hashlib.sha256()
    for line in sorted(_canonical(r) for r in records):
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def change_fraction(before: Iterable[StaticRecord], after: Iterable[StaticRecord]) -> float:
    """Facts added, removed or changed (value or sensitivity), over all facts in either set."""
    old = {fact_key(r): _canonical(r) for r in before}
    new = {fact_key(r): _canonical(r) for r in after}
    keys = old.keys() | new.keys()
    if not keys:
        return 0.0
    return sum(1 for k in keys if old.get(k) != new.get(k)) / len(keys)


# ------------------------------------------------------------------------------------------------
# the store


class StateStore:
    """Static facts and dynamic state; every method takes the DB thread's connection."""

    def __init__(self, policy: AttributePolicy) -> None:
        self.policy = policy

    @staticmethod
    def create_schema(conn: sqlite3.Connection) -> None:
        conn.executescript(SCHEMA)

    # ---- static --------------------------------------------------------------------------------

    def put_static(self, conn: sqlite3.Connection, records: Iterable[StaticRecord], now: float = 0.0) -> int:
        """Upsert facts; a name the config calls sensitive is stored sensitive whatever the record says.

        Returns how many facts were new or different.
        """
        with transaction(conn):
            return self._put_facts(conn, records, now)

    def _put_facts(self, conn: sqlite3.Connection, records: Iterable[StaticRecord], now: float) -> int:
        changed = 0
        for r in records:
            sensitive = r.sensitive or r.attribute in self.policy.sensitive
            value = json.dumps(list(r.value) if isinstance(r.value, tuple) else r.value, ensure_ascii=False)
            row = conn.execute(
                "SELECT value, sensitive FROM static_facts WHERE entity_id = ? AND attribute = ?",
                (r.entity_id, r.attribute),
            ).fetchone()
            if row is not None and row[0] == value and bool(row[1]) == sensitive:
                continue
            conn.execute(
                "INSERT OR REPLACE INTO static_facts (entity_id, attribute, value, sensitive, updated) "
                "VALUES (?, ?, ?, ?, ?)",
                (r.entity_id, r.attribute, value, int(sensitive), now),
            )
            changed += 1
        return changed

    @staticmethod
    def delete_static(conn: sqlite3.Connection, entity_id: str, attribute: str | None = None) -> int:
        """Forget one fact, or all facts of an entity (a device was removed)."""
        if attribute is None:
            return conn.execute("DELETE FROM static_facts WHERE entity_id = ?", (entity_id,)).rowcount
        return conn.execute(
            "DELETE FROM static_facts WHERE entity_id = ? AND attribute = ?", (entity_id, attribute)
        ).rowcount

    @staticmethod
    def static_facts(conn: sqlite3.Connection) -> list[StaticRecord]:
        """All facts, sensitive ones included (they are for the on-device fine-tune only)."""
        rows = conn.execute(
            "SELECT entity_id, attribute, value, sensitive FROM static_facts ORDER BY entity_id, attribute"
        ).fetchall()
        return [StaticRecord(e, a, _load_fact(v), bool(s)) for e, a, v, s in rows]

    @staticmethod
    def static_changed_at(conn: sqlite3.Connection) -> float | None:
        """When a static fact was last added or changed (the readings' clock), None without facts."""
        row = conn.execute("SELECT MAX(updated) FROM static_facts").fetchone()
        return None if row[0] is None else float(row[0])

    def static_digest(self, conn: sqlite3.Connection) -> str:
        return digest(self.static_facts(conn))

    def static_change_fraction(self, conn: sqlite3.Connection, baseline: Iterable[StaticRecord]) -> float:
        """How much of the static state differs from ``baseline`` (the facts the last fine-tune used)."""
        return change_fraction(baseline, self.static_facts(conn))

    def sensitive_attributes(self, conn: sqlite3.Connection) -> frozenset[str]:
        """Config's sensitive names plus every name some fact is marked sensitive under."""
        rows = conn.execute("SELECT DISTINCT attribute FROM static_facts WHERE sensitive = 1").fetchall()
        return self.policy.sensitive | {str(r[0]) for r in rows}

    # ---- dynamic -------------------------------------------------------------------------------

    def apply(self, conn: sqlite3.Connection, reading: Reading) -> bool:
        """Take one reading; True if the entity's dynamic state changed (then history grows too)."""
        return self.apply_many(conn, (reading,)) == 1

    def apply_many(self, conn: sqlite3.Connection, readings: Iterable[Reading]) -> int:
        """Take readings in one transaction; returns how many changed some entity's dynamic state.

        A reading older than the entity's stored state is stale (two sources, a late poll) and is
        ignored for the dynamic state; its static part is still taken.
        """
        sensitive = self.sensitive_attributes(conn)
        changed = 0
        with transaction(conn):
            for reading in readings:
                entity, facts = split(reading, self.policy, sensitive)
                if facts:
                    self._put_facts(conn, facts, reading.ts)
                    sensitive |= {f.attribute for f in facts if f.sensitive}
                changed += self._put_dynamic(conn, entity, reading.ts)
        return changed

    @staticmethod
    def _put_dynamic(conn: sqlite3.Connection, entity: EntityState, ts: float) -> int:
        attrs = _dump_attrs(entity)
        row = conn.execute(
            "SELECT state, attrs, ts FROM dynamic_state WHERE entity_id = ?", (entity.entity_id,)
        ).fetchone()
        if row is not None and (ts < row[2] or (row[0] == entity.state and row[1] == attrs)):
            return 0
        conn.execute(
            "INSERT OR REPLACE INTO dynamic_state (entity_id, state, attrs, ts) VALUES (?, ?, ?, ?)",
            (entity.entity_id, entity.state, attrs, ts),
        )
        conn.execute(
            "INSERT INTO history (entity_id, ts, state, attrs) VALUES (?, ?, ?, ?)",
            (entity.entity_id, ts, entity.state, attrs),
        )
        return 1

    @staticmethod
    def current(conn: sqlite3.Connection) -> dict[str, EntityState]:
        """The latest dynamic state of every entity (no static, no sensitive attributes)."""
        rows = conn.execute("SELECT entity_id, state, attrs FROM dynamic_state ORDER BY entity_id").fetchall()
        return {e: _load_state(e, s, a) for e, s, a in rows}

    @staticmethod
    def history(
        conn: sqlite3.Connection, entity_id: str, since: float, until: float | None = None
    ) -> list[HistoryEntry]:
        """The entity's dynamic states with ``since <= ts`` (and ``ts <= until``), oldest first."""
        sql = "SELECT ts, state, attrs FROM history WHERE entity_id = ? AND ts >= ?"
        args: tuple[object, ...] = (entity_id, since)
        if until is not None:
            sql, args = sql + " AND ts <= ?", (*args, until)
        rows = conn.execute(sql + " ORDER BY ts, rowid", args).fetchall()
        return [HistoryEntry(float(t), _load_state(entity_id, s, a)) for t, s, a in rows]

    @staticmethod
    def prune(conn: sqlite3.Connection, before_ts: float) -> int:
        """Drop history older than ``before_ts`` (retention); the current state is never dropped."""
        return conn.execute("DELETE FROM history WHERE ts < ?", (before_ts,)).rowcount


def _dump_attrs(entity: EntityState) -> str:
    return json.dumps(dict(entity.attributes), sort_keys=True, allow_nan=False, separators=(",", ":"))


def _load_state(entity_id: str, state: str | None, attrs: str) -> EntityState:
    loaded: Mapping[str, Value] = json.loads(attrs)
    return EntityState(entity_id, state, tuple(sorted(loaded.items())))


def _load_fact(text: str) -> str | int | float | bool | tuple[str, ...]:
    value = json.loads(text)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    if isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"static fact value of type {type(value).__name__}")  # only we write this table
