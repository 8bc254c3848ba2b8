"""The SDK's local buffer: a small SQLite file that survives a restart of the application.

Records wait here, oldest first, until the server acknowledges them; only then are they
removed (and their seq kept in ``acked``, the last ``keep_acked`` of them). Records the
server refused for good move to ``rejected``. The client bounds it (record count and bytes)
and raises :class:`~chatledger.client.errors.BufferFull` past either.

``durable=False`` (the default) commits with ``synchronous=NORMAL`` in WAL mode: a record
survives the application crashing; ``durable=True`` also survives the machine losing power,
at the cost of one fsync per record.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

SPOOL_FILE = "chatledger-spool.sqlite3"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "key TEXT NOT NULL UNIQUE, body BLOB NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS acked (key TEXT PRIMARY KEY, seq INTEGER, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rejected (key TEXT PRIMARY KEY, body BLOB NOT NULL, "
    "code TEXT NOT NULL, message TEXT NOT NULL, at REAL NOT NULL)",
)


class Spool:
    def __init__(
        self,
        directory: str | Path | None,
        *,
        durable: bool = False,
        keep_acked: int = 100_000,
    ) -> None:
        if directory is None:
            target = ":memory:"
            self.path: Path | None = None
        else:
            folder = Path(directory)
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / SPOOL_FILE
            target = str(self.path)
        self.keep_acked = keep_acked
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            target, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._conn.execute("PRAGMA busy_timeout = 30000")
        if self.path is not None:
            self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        for statement in _SCHEMA:
            self._conn.execute(statement)
        count, size = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM spool"
        ).fetchone()
        self.count = int(count)
        self.size = int(size)
        self._acked_since_trim = 0

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Buffer records in one transaction (a key already waiting is not added twice)."""
        now = time.time()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                added = 0
                size = 0
                for key, body in items:
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO spool (key, body, created) VALUES (?, ?, ?)",
                        (key, body, now),
                    )
                    if cursor.rowcount == 1:
                        added += 1
                        size += len(body)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.count += added
            self.size += size

    def batch(self, limit: int, max_bytes: int) -> list[tuple[str, bytes]]:
        """The oldest waiting records, at most ``limit`` and about ``max_bytes``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, body FROM spool ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        out: list[tuple[str, bytes]] = []
        total = 0
        for key, body in rows:
            if out and total + len(body) > max_bytes:
                break
            out.append((str(key), bytes(body)))
            total += len(body)
        return out

    def settle(
        self,
        acked: Sequence[tuple[str, int | None]],
        rejected: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        """Remove acknowledged and rejected records (the latter kept aside), atomically."""
        if not acked and not rejected:
            return
        now = time.time()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                removed = 0
                freed = 0
                for key, code, message in rejected:
                    row = conn.execute("SELECT body FROM spool WHERE key = ?", (key,)).fetchone()
                    if row is None:
                        continue
                    conn.execute(
                        "INSERT OR REPLACE INTO rejected (key, body, code, message, at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (key, row[0], code, message, now),
                    )
                    conn.execute("DELETE FROM spool WHERE key = ?", (key,))
                    removed += 1
                    freed += len(row[0])
                keys = [key for key, _ in acked]
                for start in range(0, len(keys), 500):
                    part = keys[start : start + 500]
                    marks = ",".join("?" * len(part))
                    size = conn.execute(
                        f"SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM spool "
                        f"WHERE key IN ({marks})",
                        part,
                    ).fetchone()
                    conn.execute(f"DELETE FROM spool WHERE key IN ({marks})", part)
                    removed += int(size[0])
                    freed += int(size[1])
                conn.executemany(
                    "INSERT OR REPLACE INTO acked (key, seq, at) VALUES (?, ?, ?)",
                    [(key, seq, now) for key, seq in acked],
                )
                self._acked_since_trim += len(acked)
                if self._acked_since_trim > max(1000, self.keep_acked // 10):
                    conn.execute(
                        "DELETE FROM acked WHERE key IN (SELECT key FROM acked ORDER BY at DESC "
                        "LIMIT -1 OFFSET ?)",
                        (self.keep_acked,),
                    )
                    self._acked_since_trim = 0
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.count -= removed
            self.size -= freed

    def seq_of(self, key: str) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT seq FROM acked WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def rejected(self) -> list[tuple[str, str, str]]:
        """(key, code, message) of every record the server refused for good."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, code, message FROM rejected ORDER BY at"
            ).fetchall()
        return [(str(k), str(c), str(m)) for k, c, m in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
