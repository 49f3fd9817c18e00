"""The durable outbox: everything the edge must deliver, in order, with a rid fixed at enqueue.

A state prompt gets its sequence number and its rid in the same transaction that stores it, so a
retry after a timeout, a reconnect or a kill -9 sends the *same* rid and the gateway executes it
once. Items leave the outbox only when the gateway answered: ``acked`` (FINAL), ``rejected`` (a
definitive 4xx, kept with its reason), or ``coalesced`` (superseded while offline).

Coalescing keeps the backlog bounded when the gateway is away for hours: a pending keyframe makes
every older pending state item redundant, and a long run of pending deltas is merged into one.
Adapter uploads are never coalesced.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared.db import transaction

Status = Literal["pending", "acked", "rejected", "coalesced"]
Kind = Literal["state", "adapter"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    twin_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rid BLOB NOT NULL UNIQUE,
    body BLOB NOT NULL,
    prompt_kind TEXT,
    seq INTEGER,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending',
    detail TEXT NOT NULL DEFAULT '',
    done REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, id);
CREATE TABLE IF NOT EXISTS outbox_seq (twin_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    twin_id: str
    kind: Kind
    rid: bytes
    body: bytes  # msgpack StateUpload body, or the adapter job's JSON
    prompt_kind: str | None
    seq: int | None
    created: float
    attempts: int


Merge = Callable[[Sequence[str]], str]  # delta prompt texts, oldest first -> one delta text


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


class Outbox:
    """Methods take the connection and run on the daemon's database thread."""

    @staticmethod
    def put_state(
        conn: sqlite3.Connection, twin_id: str, build: Callable[[int], bytes], prompt_kind: str, now: float
    ) -> Item:
        """Assign the next seq, build the body for it (``build(seq)``), and store it, atomically."""
        with transaction(conn):
            row = conn.execute("SELECT seq FROM outbox_seq WHERE twin_id = ?", (twin_id,)).fetchone()
            seq = 1 if row is None else int(row[0]) + 1
            conn.execute("INSERT OR REPLACE INTO outbox_seq (twin_id, seq) VALUES (?, ?)", (twin_id, seq))
            return _insert(conn, twin_id, "state", build(seq), prompt_kind, seq, now)

    @staticmethod
    def put_adapter(conn: sqlite3.Connection, twin_id: str, job: bytes, now: float) -> Item:
        with transaction(conn):
            return _insert(conn, twin_id, "adapter", job, None, None, now)

    @staticmethod
    def pending(conn: sqlite3.Connection, limit: int = 100) -> list[Item]:
        rows = conn.execute(
            "SELECT id, twin_id, kind, rid, body, prompt_kind, seq, created, attempts FROM outbox "
            "WHERE status = 'pending' ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [_item(r) for r in rows]

    @staticmethod
    def attempted(conn: sqlite3.Connection, item_id: int) -> None:
        conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (item_id,))

    @staticmethod
    def finish(conn: sqlite3.Connection, item_id: int, status: Status, detail: str, now: float) -> None:
        conn.execute(
            "UPDATE outbox SET status = ?, detail = ?, done = ? WHERE id = ? AND status = 'pending'",
            (status, detail[:500], now, item_id),
        )

    @staticmethod
    def counts(conn: sqlite3.Connection) -> dict[str, int]:
        rows = conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        return {str(s): int(n) for s, n in rows}

    @staticmethod
    def coalesce(
        conn: sqlite3.Connection,
        twin_id: str,
        merge: Merge,
        max_deltas: int,
        rebuild: Callable[[bytes, str], bytes],
        text_of: Callable[[bytes], str],
        now: float,
    ) -> int:
        """Bound the pending state backlog of ``twin_id``; returns how many items were superseded."""
        with transaction(conn):
            dropped = _drop_before_keyframe(conn, twin_id, now)
            rows = conn.execute(
                "SELECT id, body, seq FROM outbox WHERE twin_id = ? AND kind = 'state' AND status = 'pending' "
                "AND prompt_kind = 'delta' ORDER BY id",
                (twin_id,),
            ).fetchall()
            if len(rows) <= max_deltas:
                return dropped
            merged = merge([text_of(bytes(r[1])) for r in rows])
            last_id, last_body = int(rows[-1][0]), bytes(rows[-1][1])
            ids = [int(r[0]) for r in rows[:-1]]
            conn.executemany("UPDATE outbox SET status = 'coalesced', done = ? WHERE id = ?", [(now, i) for i in ids])
            # the newest delta carries the merged text under its own seq and rid: order is kept
            conn.execute("UPDATE outbox SET body = ? WHERE id = ?", (rebuild(last_body, merged), last_id))
            return dropped + len(ids)

    @staticmethod
    def last_acked_seq(conn: sqlite3.Connection, twin_id: str) -> int:
        row = conn.execute(
            "SELECT MAX(seq) FROM outbox WHERE twin_id = ? AND kind = 'state' AND status = 'acked'",
            (twin_id,),
        ).fetchone()
        return -1 if row[0] is None else int(row[0])

    @staticmethod
    def prune(conn: sqlite3.Connection, before: float) -> int:
        return conn.execute("DELETE FROM outbox WHERE status != 'pending' AND done < ?", (before,)).rowcount


def _drop_before_keyframe(conn: sqlite3.Connection, twin_id: str, now: float) -> int:
    row = conn.execute(
        "SELECT MAX(id) FROM outbox WHERE twin_id = ? AND kind = 'state' AND status = 'pending' "
        "AND prompt_kind = 'key'",
        (twin_id,),
    ).fetchone()
    if row[0] is None:
        return 0
    cur = conn.execute(
        "UPDATE outbox SET status = 'coalesced', done = ? WHERE twin_id = ? AND kind = 'state' "
        "AND status = 'pending' AND id < ? AND attempts = 0",
        (now, twin_id, int(row[0])),
    )
    return cur.rowcount


def _insert(
    conn: sqlite3.Connection,
    twin_id: str,
    kind: Kind,
    body: bytes,
    prompt_kind: str | None,
    seq: int | None,
    now: float,
) -> Item:
    rid = os.urandom(16)
    cur = conn.execute(
        "INSERT INTO outbox (twin_id, kind, rid, body, prompt_kind, seq, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (twin_id, kind, rid, body, prompt_kind, seq, now),
    )
    assert cur.lastrowid is not None
    return Item(cur.lastrowid, twin_id, kind, rid, body, prompt_kind, seq, now, 0)


def _item(row: tuple[Any, ...]) -> Item:
    id_, twin, kind, rid, body, pkind, seq, created, attempts = row
    return Item(int(id_), str(twin), kind, bytes(rid), bytes(body), pkind, seq, float(created), int(attempts))
