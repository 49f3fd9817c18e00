"""The prompt database: per twin, time-indexed state prompts and the latest state per entity.

Every accepted prompt is stored (``prompts``) and applied to ``entity_state``, the reconstructed
latest state of each entity, which answers "latest state of X" without replaying history. Each
entity row remembers the sharing flag of the prompt that set it, so an inter-twin query can take
exactly what owners chose to share. Retention drops old prompts but never the latest keyframe.

Sharing circles (who is in which group / region) come from the gateway config, not from devices:
owners decide *what* they share, the operator decides *with whom*.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shared.db import transaction
from shared.errors import SemanticError
from shared.protocol.messages import StateUpload
from shared.semantic import EntityState, Prompt, Value, decode_prompt

Scope = Literal["group", "region"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS twins (
    twin_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    profile TEXT NOT NULL DEFAULT '',
    software TEXT NOT NULL DEFAULT '',
    last_hello_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS prompts (
    twin_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    share TEXT NOT NULL,
    text TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (twin_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS prompts_by_time ON prompts (twin_id, ts_ms);
CREATE TABLE IF NOT EXISTS entity_state (
    twin_id TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    state TEXT,
    attrs TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    share TEXT NOT NULL,
    PRIMARY KEY (twin_id, entity_id)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Sharing:
    """Operator-defined circles: group name → twins, region name → twins."""

    groups: Mapping[str, tuple[str, ...]]
    regions: Mapping[str, tuple[str, ...]]

    def circle(self, twin_id: str, scope: Scope) -> tuple[str, ...]:
        """The other twins in ``twin_id``'s group (or region), sorted; empty if it has none."""
        table = self.groups if scope == "group" else self.regions
        for members in table.values():
            if twin_id in members:
                return tuple(sorted(t for t in members if t != twin_id))
        return ()


@dataclass(frozen=True, slots=True)
class StoredState:
    twin_id: str
    entity: EntityState
    seq: int
    ts_ms: int
    share: str


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


class PromptStore:
    """Methods run on the database thread (see shared.db.Database.run)."""

    @staticmethod
    def register_twin(
        conn: sqlite3.Connection, twin_id: str, tenant: str, profile: str, software: str, now_ms: int
    ) -> None:
        conn.execute(
            "INSERT INTO twins (twin_id, tenant, profile, software, last_hello_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (twin_id) DO UPDATE SET tenant = excluded.tenant, profile = excluded.profile, "
            "software = excluded.software, last_hello_ms = excluded.last_hello_ms",
            (twin_id, tenant, profile, software, now_ms),
        )

    @staticmethod
    def last_seq(conn: sqlite3.Connection, twin_id: str) -> int:
        row = conn.execute("SELECT MAX(seq) FROM prompts WHERE twin_id = ?", (twin_id,)).fetchone()
        return -1 if row[0] is None else int(row[0])

    @staticmethod
    def put(conn: sqlite3.Connection, upload: StateUpload, now_ms: int) -> bool:
        """Store and apply one prompt. False if this (twin, seq) is already held (a duplicate).

        The text must parse (SemanticError otherwise) before anything is written.
        """
        prompt = decode_prompt(upload.text, upload.twin_id)
        if prompt.kind != ("K" if upload.kind == "key" else "D"):
            raise SemanticError("kind: the message and the prompt's first line disagree")
        with transaction(conn):
            cur = conn.execute(
                "INSERT OR IGNORE INTO prompts (twin_id, seq, ts_ms, kind, share, text, received_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (upload.twin_id, upload.seq, upload.ts_ms, upload.kind, upload.share, upload.text, now_ms),
            )
            if cur.rowcount == 0:
                return False
            _apply(conn, upload, prompt)
        return True

    @staticmethod
    def latest_state(conn: sqlite3.Connection, twin_id: str) -> list[StoredState]:
        rows = conn.execute(
            "SELECT twin_id, entity_id, state, attrs, seq, ts_ms, share FROM entity_state "
            "WHERE twin_id = ? ORDER BY entity_id",
            (twin_id,),
        ).fetchall()
        return [_stored(row) for row in rows]

    @staticmethod
    def entity(conn: sqlite3.Connection, twin_id: str, entity_id: str) -> StoredState | None:
        row = conn.execute(
            "SELECT twin_id, entity_id, state, attrs, seq, ts_ms, share FROM entity_state "
            "WHERE twin_id = ? AND entity_id = ?",
            (twin_id, entity_id),
        ).fetchone()
        return None if row is None else _stored(row)

    @staticmethod
    def shared_states(conn: sqlite3.Connection, twins: tuple[str, ...], scope: Scope) -> list[StoredState]:
        """States of ``twins`` that their owners shared with at least ``scope``."""
        if not twins:
            return []
        # a region is the wider circle: what is shared with the region is visible to the group too
        shares = ("group", "region") if scope == "group" else ("region", "region")
        marks = ",".join("?" * len(twins))
        rows = conn.execute(
            "SELECT twin_id, entity_id, state, attrs, seq, ts_ms, share FROM entity_state "
            f"WHERE twin_id IN ({marks}) AND share IN (?, ?) ORDER BY twin_id, entity_id",
            (*twins, *shares),
        ).fetchall()
        return [_stored(row) for row in rows]

    @staticmethod
    def prune(conn: sqlite3.Connection, older_than_ms: int) -> int:
        """Delete prompts older than the cutoff, keeping each twin's latest keyframe and later."""
        with transaction(conn):
            cur = conn.execute(
                "DELETE FROM prompts WHERE ts_ms < ? AND seq < COALESCE(("
                "  SELECT MAX(k.seq) FROM prompts AS k WHERE k.twin_id = prompts.twin_id AND k.kind = 'key'"
                "), -1)",
                (older_than_ms,),
            )
            return cur.rowcount

    @staticmethod
    def count(conn: sqlite3.Connection, twin_id: str) -> int:
        return int(conn.execute("SELECT COUNT(*) FROM prompts WHERE twin_id = ?", (twin_id,)).fetchone()[0])


def _apply(conn: sqlite3.Connection, upload: StateUpload, prompt: Prompt) -> None:
    """Fold a prompt into entity_state. Older prompts never overwrite newer entity rows."""
    if prompt.kind == "K":
        conn.execute("DELETE FROM entity_state WHERE twin_id = ? AND seq < ?", (upload.twin_id, upload.seq))
    for s in prompt.states:
        before = conn.execute(
            "SELECT seq, attrs FROM entity_state WHERE twin_id = ? AND entity_id = ?",
            (upload.twin_id, s.entity_id),
        ).fetchone()
        if before is not None and before[0] > upload.seq:
            continue
        attrs: dict[str, Value] = s.attrs()
        if before is not None and prompt.kind == "D" and s.state is not None:
            attrs = json.loads(before[1]) | attrs
        conn.execute(
            "INSERT OR REPLACE INTO entity_state (twin_id, entity_id, state, attrs, seq, ts_ms, share) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                upload.twin_id,
                s.entity_id,
                s.state,
                json.dumps(attrs, sort_keys=True),
                upload.seq,
                upload.ts_ms,
                upload.share,
            ),
        )


def _stored(row: tuple[str, str, str | None, str, int, int, str]) -> StoredState:
    twin_id, entity_id, state, attrs, seq, ts_ms, share = row
    entity = EntityState(entity_id, state, tuple(json.loads(attrs).items()))
    return StoredState(twin_id, entity, seq, ts_ms, share)
