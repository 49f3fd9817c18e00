"""Idempotency: each (tenant, rid) is executed and billed once.

A request is *in flight* from admission until its outcome is known, then *done* with a stored reply.
A duplicate of a done request gets the stored reply again with ``replayed = true``; a duplicate of
an in-flight one gets 409. Outcomes are written to SQLite before they are sent, so after a crash
and restart a retried rid still gets its original reply instead of a second execution. A reconnected
client asks with FETCH; the reply then goes to the routing id that asked last.

Only definitive outcomes are stored: FINAL replies and 4xx errors other than 409 and 429 (those
invite a retry with the same rid), never 5xx.
"""

from __future__ import annotations

import enum
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    tenant TEXT NOT NULL,
    rid BLOB NOT NULL,
    tag INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS replies_by_age ON replies (created_ms);
"""


@dataclass(frozen=True, slots=True)
class StoredReply:
    """A reply message as sent: its tag and its msgpack body (header excluded)."""

    tag: int
    body: bytes


class State(enum.Enum):
    NEW = "new"
    IN_FLIGHT = "in_flight"
    DONE = "done"


@dataclass(slots=True)
class _Entry:
    peer: bytes
    reply: StoredReply | None = None


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def cacheable(status: int) -> bool:
    return status < 500 and status not in (409, 429)


class IdempotencyTable:
    """In-memory view (bounded LRU of done entries, all in-flight entries) over the replies table."""

    def __init__(self, max_done: int = 100_000) -> None:
        self._entries: OrderedDict[tuple[str, bytes], _Entry] = OrderedDict()
        self._max_done = max_done
        self._n_done = 0

    def lookup(self, tenant: str, rid: bytes) -> tuple[State, StoredReply | None]:
        entry = self._entries.get((tenant, rid))
        if entry is None:
            return State.NEW, None
        self._entries.move_to_end((tenant, rid))
        if entry.reply is None:
            return State.IN_FLIGHT, None
        return State.DONE, entry.reply

    def begin(self, tenant: str, rid: bytes, peer: bytes) -> None:
        self._entries[(tenant, rid)] = _Entry(peer)

    def redirect(self, tenant: str, rid: bytes, peer: bytes) -> None:
        """Send the eventual reply of an in-flight request to ``peer`` (a reconnected client)."""
        entry = self._entries.get((tenant, rid))
        if entry is not None:
            entry.peer = peer

    def peer(self, tenant: str, rid: bytes) -> bytes | None:
        entry = self._entries.get((tenant, rid))
        return None if entry is None else entry.peer

    def finish(self, tenant: str, rid: bytes, reply: StoredReply | None) -> None:
        """Record the outcome (None: not cacheable, forget the rid so a retry executes again)."""
        key = (tenant, rid)
        if reply is None:
            self._entries.pop(key, None)
            return
        entry = self._entries.setdefault(key, _Entry(b""))
        if entry.reply is None:
            self._n_done += 1
        entry.reply = reply
        self._entries.move_to_end(key)
        self._evict()

    def remember(self, tenant: str, rid: bytes, reply: StoredReply) -> None:
        """Load a done entry found in the database into memory."""
        self.finish(tenant, rid, reply)

    def _evict(self) -> None:
        while self._n_done > self._max_done:
            for key, entry in self._entries.items():
                if entry.reply is not None:
                    del self._entries[key]
                    self._n_done -= 1
                    break

    def __len__(self) -> int:
        return len(self._entries)


class ReplyStore:
    """The persistent half; methods run on the database thread."""

    @staticmethod
    def put(conn: sqlite3.Connection, tenant: str, rid: bytes, reply: StoredReply, now_ms: int) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO replies (tenant, rid, tag, body, created_ms) VALUES (?, ?, ?, ?, ?)",
            (tenant, rid, reply.tag, reply.body, now_ms),
        )

    @staticmethod
    def get(conn: sqlite3.Connection, tenant: str, rid: bytes) -> StoredReply | None:
        row = conn.execute(
            "SELECT tag, body FROM replies WHERE tenant = ? AND rid = ?", (tenant, rid)
        ).fetchone()
        return None if row is None else StoredReply(int(row[0]), bytes(row[1]))

    @staticmethod
    def prune(conn: sqlite3.Connection, older_than_ms: int) -> int:
        return conn.execute("DELETE FROM replies WHERE created_ms < ?", (older_than_ms,)).rowcount
