"""SQLite owned by one thread, so the event loop never blocks on disk (gateway and edge).

Stores (prompts, idempotency, adapter registry) are plain classes whose methods take a
``sqlite3.Connection``; the service calls them through :meth:`Database.run`, which executes them on
the database thread. Tests call the same methods directly on a connection. WAL mode, synchronous
NORMAL (durable across a process crash; an OS crash may lose the last transactions, never corrupt).
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from shared.errors import InternalError, StorageFull

T = TypeVar("T")
P = ParamSpec("P")

SCHEMA_VERSION = 1
FULL_RETRY_MS = 5_000  # how long a client waits before retrying a request refused for a full disk
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the gateway's pragmas. Creates the file (and folder) if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Database:
    """One connection, one thread. ``run(fn, ...)`` awaits ``fn(conn, ...)`` on that thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db")
        self._conn: sqlite3.Connection | None = None

    async def open(self, *schemas: Callable[[sqlite3.Connection], None]) -> None:
        def _open() -> None:
            self._conn = connect(self.path)
            for create in schemas:
                create(self._conn)

        await asyncio.get_running_loop().run_in_executor(self._executor, _open)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(conn, *args)`` on the database thread. A full disk (SQLite or a file ``fn`` writes)
        surfaces as :class:`StorageFull`, the one error callers can answer with a stable code."""
        conn = self._conn
        if conn is None:
            raise InternalError("database is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(conn, *args))
        except (sqlite3.OperationalError, OSError) as exc:
            if not disk_full(exc):
                raise
            raise StorageFull("storage full", retry_after_ms=FULL_RETRY_MS) from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or quota) is full."""
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def transaction(conn: sqlite3.Connection) -> _Transaction:
    """``with transaction(conn):`` BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error."""
    return _Transaction(conn)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            if self._conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL): keep the real error
                self._conn.execute("ROLLBACK")
            return
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error:
            # a COMMIT that fails (disk full) may leave the transaction open; without this ROLLBACK
            # every later BEGIN on the connection fails, even once space is back
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
