"""The embedded SQLite backend: one file in WAL mode, durable commits, append-only triggers.

One writer connection per process does every write inside ``BEGIN IMMEDIATE`` (the
ledger's group-commit thread owns it); reads use one connection per thread. Several
processes may append to the same file: ``BEGIN IMMEDIATE`` serialises them and the ledger
re-reads the head under the lock.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chatledger.errors import StorageError
from chatledger.ledger.merkle import NodeKey
from chatledger.store.base import (
    CheckpointRow,
    EntryRow,
    ErasureRow,
    PayloadRow,
    SubjectKeyRow,
)
from chatledger.store.sqlite_schema import apply_migrations

_ENTRY_COLUMNS = (
    "seq, ts, category, action, actor_id, entity_type, entity_id, outcome, subject, chatbot_id, "
    "conversation_id, body, "
    "leaf_hash, mac"
)


def _use_wal(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch a fresh file to WAL. The switch needs a lock that SQLite does not wait for
    through the busy handler: while another process creates the same file, it can fail at
    once with "database is locked", so it is retried for a few seconds."""
    for attempt in range(attempts):
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
        else:
            if mode in ("wal", "memory") or attempt == attempts - 1:
                return
        time.sleep(0.1)


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    _use_wal(conn)
    # FULL: a commit is on disk before append() returns (acknowledged means durable).
    conn.execute("PRAGMA synchronous = FULL")
    # Destroyed keys and erased payloads are overwritten with zeros, not left in free pages.
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    return conn


def _nodes_query(conn: sqlite3.Connection, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
    """Fetch perfect-subtree hashes: level 0 from the entries, higher levels from nodes."""
    out: dict[NodeKey, bytes] = {}
    leaves = [idx for level, idx in keys if level == 0]
    inner = [(level, idx) for level, idx in keys if level > 0]
    for chunk in _chunks(leaves, 500):
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT seq, leaf_hash FROM ledger_entries WHERE seq IN ({marks})",
            chunk,
        ).fetchall()
        out.update({(0, seq): bytes(h) for seq, h in rows})
    for chunk2 in _chunks(inner, 400):
        cond = " OR ".join("(level = ? AND idx = ?)" for _ in chunk2)
        params = [v for key in chunk2 for v in key]
        rows = conn.execute(
            f"SELECT level, idx, hash FROM ledger_nodes WHERE {cond}",
            params,
        ).fetchall()
        out.update({(level, idx): bytes(h) for level, idx, h in rows})
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class SqliteWriteTxn:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._savepoints = 0

    def head(self) -> tuple[int, bytes | None]:
        row = self.conn.execute(
            "SELECT seq, leaf_hash FROM ledger_entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return 0, None
        return int(row[0]) + 1, bytes(row[1])

    def fetch_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        return _nodes_query(self.conn, keys)

    def insert_entries(self, rows: Sequence[EntryRow]) -> None:
        self.conn.executemany(
            f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    r.seq,
                    r.ts,
                    r.category,
                    r.action,
                    r.actor_id,
                    r.entity_type,
                    r.entity_id,
                    r.outcome,
                    r.subject,
                    r.chatbot_id,
                    r.conversation_id,
                    r.body,
                    r.leaf_hash,
                    r.mac,
                )
                for r in rows
            ],
        )

    def insert_nodes(self, rows: Sequence[tuple[int, int, bytes]]) -> None:
        self.conn.executemany("INSERT INTO ledger_nodes VALUES (?,?,?)", rows)

    def insert_payloads(self, rows: Sequence[PayloadRow]) -> None:
        self.conn.executemany(
            "INSERT INTO ledger_payloads VALUES (?,?,?,?)",
            [(r.seq, r.key_ref, r.nonce, r.ciphertext) for r in rows],
        )

    def insert_checkpoint(self, row: CheckpointRow) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO ledger_checkpoints VALUES (?,?,?)", (row.size, row.ts, row.note)
        )

    def live_subject_key(self, subject_ref: str) -> SubjectKeyRow | None:
        row = self.conn.execute(
            "SELECT key_ref, subject_ref, wrapped, created_at, erased_at, erasure_seq "
            "FROM subject_keys WHERE subject_ref = ? AND wrapped IS NOT NULL "
            "ORDER BY created_at DESC LIMIT 1",
            (subject_ref,),
        ).fetchone()
        return SubjectKeyRow(*row) if row else None

    def insert_subject_key(self, row: SubjectKeyRow) -> None:
        self.conn.execute(
            "INSERT INTO subject_keys VALUES (?,?,?,?,?,?)",
            (row.key_ref, row.subject_ref, row.wrapped, row.created_at, None, None),
        )

    def erase_subject_keys(self, subject_ref: str, erased_at: str, erasure_seq: int) -> int:
        cur = self.conn.execute(
            "UPDATE subject_keys SET wrapped = NULL, erased_at = ?, erasure_seq = ? "
            "WHERE subject_ref = ? AND wrapped IS NOT NULL",
            (erased_at, erasure_seq, subject_ref),
        )
        return cur.rowcount

    def keys_destroyed_since(self, seq: int) -> bool:
        # Keys are destroyed only with a privacy.subject_erased entry in the same
        # transaction: look among the entries from ``seq`` on (a short range on the primary
        # key) rather than scan subject_keys, which has no index on erasure_seq.
        row = self.conn.execute(
            "SELECT 1 FROM ledger_entries WHERE seq >= ? AND action = 'privacy.subject_erased' "
            "LIMIT 1",
            (seq,),
        ).fetchone()
        return row is not None

    def payload_seqs_for_subject(self, subject_ref: str) -> list[int]:
        rows = self.conn.execute(
            # A payload is sealed under its entry's subject key: the subject index finds them.
            "SELECT p.seq FROM ledger_entries e JOIN ledger_payloads p ON p.seq = e.seq "
            "WHERE e.subject = ? ORDER BY p.seq",
            (subject_ref,),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def record_payload_erasures(
        self, seqs: Sequence[int], erasure_seq: int, reason: str, *, delete: bool
    ) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO ledger_payload_erasures VALUES (?,?,?)",
            [(seq, erasure_seq, reason) for seq in seqs],
        )
        if delete:
            self.conn.executemany("DELETE FROM ledger_payloads WHERE seq = ?", [(s,) for s in seqs])

    def savepoint(self) -> None:
        self._savepoints += 1
        self.conn.execute(f"SAVEPOINT sp{self._savepoints}")

    def release_savepoint(self) -> None:
        self.conn.execute(f"RELEASE sp{self._savepoints}")
        self._savepoints -= 1

    def rollback_savepoint(self) -> None:
        self.conn.execute(f"ROLLBACK TO sp{self._savepoints}")
        self.conn.execute(f"RELEASE sp{self._savepoints}")
        self._savepoints -= 1

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()


class SqliteStore:
    """The ledger store on one SQLite file."""

    dialect = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = connect(self.path)
            apply_migrations(self._writer)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open the database {self.path}: {exc}") from exc
        self._write_lock = threading.Lock()
        # Writers of other processes wait on this file lock, which wakes them the moment it is
        # released; SQLite's own busy handler sleeps in steps of up to 100 ms instead, which
        # collapses throughput when several server processes share one file.
        self._process_lock = os.open(f"{self.path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[SqliteWriteTxn]:
        with self._write_lock:
            fcntl.flock(self._process_lock, fcntl.LOCK_EX)
            try:
                yield from self._transaction()
            finally:
                fcntl.flock(self._process_lock, fcntl.LOCK_UN)

    def _transaction(self) -> Iterator[SqliteWriteTxn]:
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot start a write transaction: {exc}") from exc
        try:
            yield SqliteWriteTxn(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageError(f"commit failed: {exc}") from exc

    # -- reading ---------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StorageError("the store is closed")
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def read_connection(self) -> sqlite3.Connection:
        """This thread's read-only connection (for components with their own SQL)."""
        return self._reader()

    def size(self) -> int:
        row = self._reader().execute("SELECT MAX(seq) FROM ledger_entries").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def entries(self, start: int, end: int, *, batch: int = 5000) -> Iterator[EntryRow]:
        conn = self._reader()
        pos = start
        while pos < end:
            upto = min(end, pos + batch)
            rows = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries "
                "WHERE seq >= ? AND seq < ? ORDER BY seq",
                (pos, upto),
            ).fetchall()
            for row in rows:
                yield EntryRow(*row)
            pos = upto

    def entry_batches(
        self, start: int, end: int, *, batch: int = 5000
    ) -> Iterator[list[tuple[Any, ...]]]:
        conn = self._reader()
        for pos in range(start, end, batch):
            yield conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries "
                "WHERE seq >= ? AND seq < ? ORDER BY seq",
                (pos, min(end, pos + batch)),
            ).fetchall()

    def payload_batches(
        self, start: int, end: int, *, batch: int = 5000
    ) -> Iterator[list[tuple[Any, ...]]]:
        conn = self._reader()
        for pos in range(start, end, batch):
            yield conn.execute(
                "SELECT seq, key_ref, nonce, ciphertext FROM ledger_payloads "
                "WHERE seq >= ? AND seq < ? ORDER BY seq",
                (pos, min(end, pos + batch)),
            ).fetchall()

    def entry(self, seq: int) -> EntryRow | None:
        row = (
            self._reader()
            .execute(
                f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries WHERE seq = ?",
                (seq,),
            )
            .fetchone()
        )
        return EntryRow(*row) if row else None

    def fetch_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        return _nodes_query(self._reader(), keys)

    def nodes(self, level: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        conn = self._reader()
        pos = start
        while pos < end:
            rows = conn.execute(
                "SELECT idx, hash FROM ledger_nodes WHERE level = ? AND idx >= ? AND idx < ? "
                "ORDER BY idx LIMIT 5000",
                (level, pos, end),
            ).fetchall()
            if not rows:
                return
            for idx, h in rows:
                yield int(idx), bytes(h)
            pos = int(rows[-1][0]) + 1

    def payloads(self, start: int, end: int) -> Iterator[PayloadRow]:
        conn = self._reader()
        pos = start
        while pos < end:
            rows = conn.execute(
                "SELECT seq, key_ref, nonce, ciphertext FROM ledger_payloads "
                "WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT 5000",
                (pos, end),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield PayloadRow(*row)
            pos = int(rows[-1][0]) + 1

    def payload(self, seq: int) -> PayloadRow | None:
        row = (
            self._reader()
            .execute(
                "SELECT seq, key_ref, nonce, ciphertext FROM ledger_payloads WHERE seq = ?", (seq,)
            )
            .fetchone()
        )
        return PayloadRow(*row) if row else None

    def subject_key(self, key_ref: str) -> SubjectKeyRow | None:
        row = (
            self._reader()
            .execute(
                "SELECT key_ref, subject_ref, wrapped, created_at, erased_at, erasure_seq "
                "FROM subject_keys WHERE key_ref = ?",
                (key_ref,),
            )
            .fetchone()
        )
        return SubjectKeyRow(*row) if row else None

    def subject_keys(self) -> Iterator[SubjectKeyRow]:
        for row in (
            self._reader()
            .execute(
                "SELECT key_ref, subject_ref, wrapped, created_at, erased_at, erasure_seq "
                "FROM subject_keys ORDER BY key_ref"
            )
            .fetchall()
        ):
            yield SubjectKeyRow(*row)

    def checkpoints(self) -> list[CheckpointRow]:
        rows = (
            self._reader()
            .execute("SELECT size, ts, note FROM ledger_checkpoints ORDER BY size")
            .fetchall()
        )
        return [CheckpointRow(*row) for row in rows]

    def latest_checkpoint(self) -> CheckpointRow | None:
        row = (
            self._reader()
            .execute("SELECT size, ts, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1")
            .fetchone()
        )
        return CheckpointRow(*row) if row else None

    def payload_erasures(self) -> dict[int, ErasureRow]:
        rows = (
            self._reader()
            .execute("SELECT seq, erasure_seq, reason FROM ledger_payload_erasures")
            .fetchall()
        )
        return {int(r[0]): ErasureRow(*r) for r in rows}

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._reader().execute(sql, params).fetchall()

    def checkpoint_wal(self) -> None:
        """Fold the WAL into the main file and truncate it (after erasures)."""
        with self._write_lock:
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self._closed = True
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()
            os.close(self._process_lock)
