"""The daemon's record of fine-tuning rounds (SQLite, beside the outbox in the edge database).

One row per round: why it ran, what it trained on (the static facts, as the baseline for "how much
has changed since"), what came out (status, reason, held-out accuracy, artifact) and, for an accepted
adapter, the outbox item that uploads it. The upload's fate is the outbox item's status: ``acked``
(the gateway serves it), ``rejected`` (the gateway refused it, with its reason) or still ``pending``.
Methods take the connection and run on the daemon's database thread.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

from edge.readings import StaticRecord

RoundStatus = Literal["running", "accepted", "rejected", "skipped", "failed", "interrupted"]
UploadState = Literal["", "pending", "acked", "rejected", "coalesced"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS finetune_rounds (
    version INTEGER PRIMARY KEY,
    trigger TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL DEFAULT 'running',
    reason TEXT NOT NULL DEFAULT '',
    accuracy REAL,
    adapter_path TEXT,
    static_digest TEXT NOT NULL,
    records TEXT NOT NULL,
    outbox_id INTEGER
);
"""


@dataclass(frozen=True, slots=True)
class RoundRow:
    version: int
    trigger: str
    started: float  # daemon clock (scenario time under the simulator)
    finished: float | None
    status: RoundStatus
    reason: str
    accuracy: float | None
    adapter_path: str | None  # accepted: the served artifact; rejected: the candidate (a resume point)
    static_digest: str
    outbox_id: int | None
    upload: UploadState  # the outbox item's status ("" when nothing was queued)
    upload_detail: str

    def public(self) -> dict[str, Any]:
        """For /status and logs: everything but the trained-on facts."""
        return {
            "version": self.version,
            "trigger": self.trigger,
            "started": self.started,
            "finished": self.finished,
            "status": self.status,
            "reason": self.reason,
            "accuracy": self.accuracy,
            "adapter_path": self.adapter_path,
            "upload": self.upload,
            "upload_detail": self.upload_detail,
        }


_COLUMNS = (
    "r.version, r.trigger, r.started, r.finished, r.status, r.reason, r.accuracy, r.adapter_path, "
    "r.static_digest, r.outbox_id, COALESCE(o.status, ''), COALESCE(o.detail, '')"
)
_FROM = "finetune_rounds AS r LEFT JOIN outbox AS o ON o.id = r.outbox_id"


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


class RoundHistory:
    @staticmethod
    def begin(
        conn: sqlite3.Connection,
        version: int,
        trigger: str,
        now: float,
        digest: str,
        records: list[StaticRecord],
    ) -> None:
        conn.execute(
            "INSERT INTO finetune_rounds (version, trigger, started, static_digest, records) VALUES (?, ?, ?, ?, ?)",
            (version, trigger, now, digest, json.dumps([_plain(r) for r in records])),
        )

    @staticmethod
    def finish(
        conn: sqlite3.Connection,
        version: int,
        status: RoundStatus,
        reason: str,
        now: float,
        accuracy: float | None = None,
        adapter_path: str | None = None,
        outbox_id: int | None = None,
    ) -> None:
        conn.execute(
            "UPDATE finetune_rounds SET status = ?, reason = ?, finished = ?, accuracy = ?, adapter_path = ?, "
            "outbox_id = ? WHERE version = ?",
            (status, reason[:2000], now, accuracy, adapter_path, outbox_id, version),
        )

    @staticmethod
    def interrupt_running(conn: sqlite3.Connection, now: float) -> int:
        """Rounds a previous daemon left 'running' (killed with it): marked interrupted."""
        return conn.execute(
            "UPDATE finetune_rounds SET status = 'interrupted', reason = 'the daemon stopped during the round', "
            "finished = ? WHERE status = 'running'",
            (now,),
        ).rowcount

    @staticmethod
    def last(conn: sqlite3.Connection, *statuses: RoundStatus) -> RoundRow | None:
        where = f"WHERE r.status IN ({', '.join('?' * len(statuses))})" if statuses else ""
        query = f"SELECT {_COLUMNS} FROM {_FROM} {where} ORDER BY r.version DESC LIMIT 1"
        row = conn.execute(query, statuses).fetchone()
        return None if row is None else _row(row)

    @staticmethod
    def recent(conn: sqlite3.Connection, limit: int = 10) -> list[RoundRow]:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM {_FROM} ORDER BY r.version DESC LIMIT ?", (limit,)).fetchall()
        return [_row(r) for r in rows]

    @staticmethod
    def max_version(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT MAX(version) FROM finetune_rounds").fetchone()
        return 0 if row[0] is None else int(row[0])

    @staticmethod
    def trained_on(conn: sqlite3.Connection, version: int) -> list[StaticRecord]:
        row = conn.execute("SELECT records FROM finetune_rounds WHERE version = ?", (version,)).fetchone()
        return [] if row is None else [_record(d) for d in json.loads(row[0])]


def _row(row: tuple[Any, ...]) -> RoundRow:
    version, trigger, started, finished, status, reason, acc, path, digest, outbox_id, upload, detail = row
    return RoundRow(
        int(version), str(trigger), float(started), None if finished is None else float(finished), status,
        str(reason), None if acc is None else float(acc), path, str(digest),
        None if outbox_id is None else int(outbox_id), upload, str(detail),
    )  # fmt: skip


def _plain(r: StaticRecord) -> dict[str, Any]:
    value = list(r.value) if isinstance(r.value, tuple) else r.value
    return {"entity_id": r.entity_id, "attribute": r.attribute, "value": value, "sensitive": r.sensitive}


def _record(d: dict[str, Any]) -> StaticRecord:
    value = tuple(d["value"]) if isinstance(d["value"], list) else d["value"]
    return StaticRecord(d["entity_id"], d["attribute"], value, bool(d["sensitive"]))
