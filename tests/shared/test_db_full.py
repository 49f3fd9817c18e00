"""A full database surfaces as a disk-full error (StorageFull at the async boundary), never as a
rollback error that hides it, and the connection keeps working once space is back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shared.db import connect, disk_full, transaction


def test_a_full_database_keeps_its_error_and_recovers(tmp_path: Path) -> None:
    conn = connect(tmp_path / "full.sqlite3")
    try:
        conn.execute("CREATE TABLE t (v BLOB)")
        conn.execute("PRAGMA max_page_count = 20")
        with pytest.raises(sqlite3.OperationalError) as info:
            for _ in range(100):
                with transaction(conn):
                    conn.execute("INSERT INTO t VALUES (?)", (b"x" * 4096,))
        assert disk_full(info.value), info.value
        assert not conn.in_transaction
        conn.execute("PRAGMA max_page_count = 100000")  # space is back
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (?)", (b"y",))
        assert conn.execute("SELECT count(*) FROM t WHERE v = ?", (b"y",)).fetchone()[0] == 1
    finally:
        conn.close()
