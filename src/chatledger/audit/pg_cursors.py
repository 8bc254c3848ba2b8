"""SIEM forwarder cursors on PostgreSQL: the ``audit_forwarder_cursors`` table (migration 10,
:mod:`chatledger.store.pg_schema_audit`), shared by every process serving the log.

Several server processes run the same forwarders. One at a time forwards a given forwarder:
a batch is read, sent and acknowledged while the process holds a session advisory lock keyed
by the log's schema and the forwarder's name (:meth:`PgCursors.try_hold`); a process that finds
it held skips its turn. The lock is taken before the cursor is read, so the holder always
starts from what the previous holder acknowledged: no batch goes out twice because two
processes read the same cursor. A process that dies releases the lock with its session.

Cursors kept in files by earlier releases (``<data dir>/forwarders/<name>.cursor.json``) are
taken over on first use: a forwarder carries on where its file says, never from the start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import psycopg

from chatledger.audit.pg_textindex import advisory_key, connect, ensure_schema
from chatledger.errors import StorageError
from chatledger.ledger.service import Ledger

Conn = psycopg.Connection[Any]

COLUMNS = "name, last_seq, delivered, updated_at, failures, last_error, last_error_at"

_ADVANCE = """
INSERT INTO audit_forwarder_cursors AS c (name, last_seq, delivered, updated_at)
VALUES (%s, %s, %s, %s)
ON CONFLICT (name) DO UPDATE SET
    last_seq = GREATEST(c.last_seq, excluded.last_seq),
    delivered = c.delivered + excluded.delivered,
    updated_at = excluded.updated_at,
    failures = 0
"""

_FAILED = """
INSERT INTO audit_forwarder_cursors AS c
    (name, last_seq, delivered, updated_at, failures, last_error, last_error_at)
VALUES (%s, -1, 0, %s, 1, %s, %s)
ON CONFLICT (name) DO UPDATE SET
    failures = c.failures + 1,
    last_error = excluded.last_error,
    last_error_at = excluded.last_error_at
"""

_ADOPT = f"""
INSERT INTO audit_forwarder_cursors ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (name) DO NOTHING
"""


class PgCursors:
    """The cursor rows of one log, on a connection of their own (autocommit: each write is
    one statement). Not thread-safe: :class:`~chatledger.audit.forward.CursorStore` holds a
    lock around every call."""

    def __init__(self, ledger: Ledger, legacy_dir: Path | None = None) -> None:
        self.ledger = ledger
        self.schema = str(getattr(ledger.store, "schema", "public"))
        self.legacy_dir = legacy_dir
        self._conn: Conn | None = None
        self._held: dict[str, Conn] = {}

    def _db(self) -> Conn:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
                self._held.clear()  # a lost session released its locks
            ensure_schema(self.ledger)
            conn = connect(self.ledger, "forwarder")
            try:
                self._adopt_files(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self._db().execute(sql, params)
            return cur.fetchall() if cur.description is not None else []
        except psycopg.Error as exc:
            if self._conn is not None and self._conn.broken:
                self.close()
            raise StorageError(f"forwarder cursors: {exc}") from exc

    def _adopt_files(self, conn: Conn) -> None:
        folder = self.legacy_dir / "forwarders" if self.legacy_dir is not None else None
        if folder is None or not folder.is_dir():
            return
        for path in sorted(folder.glob("*.cursor.json")):
            try:
                row = orjson.loads(path.read_bytes())
                values = tuple(row.get(c) for c in COLUMNS.split(", "))
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(values[0], str) and isinstance(values[1], int):
                conn.execute(_ADOPT, values)

    def get(self, name: str) -> tuple[Any, ...] | None:
        rows = self._run(f"SELECT {COLUMNS} FROM audit_forwarder_cursors WHERE name = %s", (name,))
        return rows[0] if rows else None

    def all(self) -> list[tuple[Any, ...]]:
        return self._run(f"SELECT {COLUMNS} FROM audit_forwarder_cursors ORDER BY name")

    def advance(self, name: str, last_seq: int, delivered: int, now: str) -> None:
        self._run(_ADVANCE, (name, last_seq, delivered, now))

    def failed(self, name: str, error: str, now: str) -> None:
        self._run(_FAILED, (name, now, error, now))

    def lock_key(self, name: str) -> int:
        return advisory_key(f"forwarder:{name}", self.schema)

    def try_hold(self, name: str) -> bool:
        """Take the forwarder's lock for this process (False: another process holds it)."""
        rows = self._run("SELECT pg_try_advisory_lock(%s)", (self.lock_key(name),))
        if rows and rows[0][0]:
            assert self._conn is not None
            self._held[name] = self._conn
            return True
        return False

    def release(self, name: str) -> None:
        conn = self._held.pop(name, None)
        if conn is not None and conn is self._conn and not conn.broken:
            self._run("SELECT pg_advisory_unlock(%s)", (self.lock_key(name),))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is not None:
            conn.close()
