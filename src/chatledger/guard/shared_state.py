"""Where the guard keeps state that every server process of one deployment shares.

Rate-limit buckets and anomaly counters must hold for the deployment, not per process: with
``chatledger serve --workers N`` (or several servers on one PostgreSQL database) a per-process
limit grants N times the limit and a per-process counter lets an attacker who is spread over
the workers stay under every threshold. Both live here:

- SQLite: a small file of its own beside the database (``rate_limits.db``), so that the guard
  never waits behind a ledger commit. Writers of different processes take turns through a
  file lock, which wakes the next one at once (SQLite's busy handler sleeps in steps).
- PostgreSQL: UNLOGGED tables in the ledger's schema (the application role may create the
  platform's own tables), on a connection of its own.

This is transient state, not part of the record: nothing here is versioned with the schema,
and losing it (a crash empties UNLOGGED tables, a deleted file) only resets counters and
refills buckets. Callers store keyed pseudonyms, never addresses or visitor ids.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

SQLITE_FILE = "rate_limits.db"

T = TypeVar("T")
Rows = list[tuple[Any, ...]]
Execute = Callable[[str, dict[str, Any]], Rows]
"""Runs one statement (``:name`` placeholders) and returns its rows (none for DML without
RETURNING)."""

_TABLES = (
    """
    CREATE {unlogged} TABLE IF NOT EXISTS rate_buckets (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        tokens DOUBLE PRECISION NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        refused INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    )
    """,
    # One row per observation (a request, a failed login, an injection attempt) or per
    # distinct item (a conversation or document read); counted over a sliding window.
    """
    CREATE {unlogged} TABLE IF NOT EXISTS anomaly_marks (
        pattern TEXT NOT NULL,
        key TEXT NOT NULL,
        item TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (pattern, key, item)
    )
    """,
    "CREATE INDEX IF NOT EXISTS anomaly_marks_window ON anomaly_marks (pattern, key, at)",
    "CREATE INDEX IF NOT EXISTS anomaly_marks_age ON anomaly_marks (at)",
    # The last finding reported per key, so that every process reports a level once a window.
    """
    CREATE {unlogged} TABLE IF NOT EXISTS anomaly_alerts (
        pattern TEXT NOT NULL,
        key TEXT NOT NULL,
        rank INTEGER NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (pattern, key)
    )
    """,
)


class SharedDb(Protocol):
    """A connection to the deployment's shared guard state."""

    def write(self, fn: Callable[[Execute], T]) -> T:
        """Run ``fn``'s statements as one unit that no other process interleaves with."""
        ...

    def write_one(self, sql: str, params: dict[str, Any]) -> Rows:
        """Run one writing statement (atomic on its own)."""
        ...

    def read(self, fn: Callable[[Execute], T]) -> T: ...

    def close(self) -> None: ...


class SqliteShared:
    """The shared state in a SQLite file of its own (opened on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._file_lock = -1

    def _db(self) -> sqlite3.Connection:
        """This file's connection (call with ``_lock`` held)."""
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout = 5000")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = OFF")  # transient: a lost write resets
                conn.execute("PRAGMA secure_delete = ON")
                self._file_lock = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._locked(lambda run: [run(ddl.format(unlogged=""), {}) for ddl in _TABLES])
        return self._conn

    def _locked(self, fn: Callable[[Execute], T]) -> T:
        conn = self._conn
        assert conn is not None

        def run(sql: str, params: dict[str, Any]) -> Rows:
            return conn.execute(sql, params).fetchall()

        fcntl.flock(self._file_lock, fcntl.LOCK_EX)
        try:
            return fn(run)
        finally:
            fcntl.flock(self._file_lock, fcntl.LOCK_UN)

    def write(self, fn: Callable[[Execute], T]) -> T:
        # Each statement commits on its own (synchronous=OFF makes that cheap); the file lock
        # keeps the group atomic with respect to the other processes' writers.
        with self._lock:
            self._db()
            return self._locked(fn)

    def write_one(self, sql: str, params: dict[str, Any]) -> Rows:
        return self.write(lambda run: run(sql, params))

    def read(self, fn: Callable[[Execute], T]) -> T:
        with self._lock:
            conn = self._db()
            return fn(lambda sql, params: conn.execute(sql, params).fetchall())

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                os.close(self._file_lock)
                self._conn = None


class PostgresShared:
    """The shared state in UNLOGGED tables of the ledger's schema, on a connection of its own."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._lock = threading.Lock()

    def _db(self) -> Any:
        """The live connection (call with ``_lock`` held)."""
        import psycopg

        if self._conn is None or self._conn.closed or self._conn.broken:
            conn = self._connect()
            try:
                for ddl in _TABLES:
                    # (Another process may create the same table at the same moment.)
                    with contextlib.suppress(
                        psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable
                    ):
                        conn.execute(ddl.format(unlogged="UNLOGGED"))
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _run(self, fn: Callable[[Execute], T], transaction: bool) -> T:
        import psycopg

        with self._lock:
            conn = self._db()

            def run(sql: str, params: dict[str, Any]) -> Rows:
                cur = conn.execute(named(sql), params)
                return cur.fetchall() if cur.description is not None else []

            try:
                if not transaction:
                    return fn(run)
                with conn.transaction():
                    return fn(run)
            except psycopg.Error:
                if conn.broken:
                    conn.close()
                    self._conn = None
                raise

    def write(self, fn: Callable[[Execute], T]) -> T:
        return self._run(fn, transaction=True)

    def write_one(self, sql: str, params: dict[str, Any]) -> Rows:
        # (autocommit: one round trip, the row lock makes an upsert exact)
        return self._run(lambda run: run(sql, params), transaction=False)

    def read(self, fn: Callable[[Execute], T]) -> T:
        return self._run(fn, transaction=False)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def named(sql: str) -> str:
    """``:name`` placeholders (sqlite3's) as psycopg's ``%(name)s``."""
    return _PLACEHOLDER.sub(r"%(\1)s", sql)


_PLACEHOLDER = re.compile(r"(?<![:\w]):([a-z_]+)")


def shared_db(store: Any) -> SharedDb:
    """The shared guard state for a platform on ``store`` (SQLite file or PostgreSQL)."""
    if getattr(store, "dialect", "") == "postgresql":
        url = str(store.url)

        def connect() -> Any:
            import psycopg

            return psycopg.connect(
                url, autocommit=True, application_name="chatledger-guard", connect_timeout=10
            )

        return PostgresShared(connect)
    return SqliteShared(Path(store.path).with_name(SQLITE_FILE))


def store_errors() -> tuple[type[BaseException], ...]:
    """What a failing shared store raises (the guard then falls back to this process)."""
    from chatledger.errors import ChatLedgerError

    try:
        import psycopg

        pg: Sequence[type[BaseException]] = (psycopg.Error,)
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pg = ()
    return (sqlite3.Error, OSError, ChatLedgerError, *pg)
