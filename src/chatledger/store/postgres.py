"""The PostgreSQL backend: the same store as SQLite, for several processes and bigger logs.

- One writer connection per process, used by the ledger's group-commit thread. Every write
  transaction first takes ``pg_advisory_xact_lock`` on a key derived from the schema's name,
  so the processes appending to one log take turns and each re-reads the head under the
  lock (READ COMMITTED: every statement after the lock sees what the previous holder
  committed). The group commit makes one lock hold cover many events.
- ``synchronous_commit = on`` on the writer: an acknowledged append is on disk (and on the
  synchronous standbys, if the server has any).
- Few round trips: the lock and the head are read in one pipeline; inserts (one multi-row
  ``INSERT ... SELECT FROM unnest(...)`` per table) and savepoints are queued and go out with
  the next statement that needs an answer, or with the COMMIT. Live subject keys found by
  earlier transactions are remembered while no key is destroyed (the newest erasure that
  destroyed one is read under the lock too), so a process whose key cache the ledger drops
  because another process appended does not look every subject up again.
- Readers share a small connection pool (autocommit, read-only sessions). Iterators fetch in
  batches and hand the connection back between batches.
- The platform's own SQL is written for SQLite with ``?`` placeholders.
  :func:`qmark_to_format` turns them into psycopg's ``%s`` (and doubles literal ``%``),
  skipping quoted strings, quoted identifiers, comments and dollar-quoted bodies. Nothing
  else is translated: write SQL both databases accept (``ON CONFLICT DO NOTHING``, not
  ``INSERT OR IGNORE``). ``E'...'`` strings with backslash escapes are not understood, and
  jsonb's ``?`` operators must be spelled ``jsonb_exists()`` when parameters are passed.
  Without parameters the SQL goes to the server untouched.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import IsolationLevel
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from chatledger.errors import StorageError
from chatledger.ledger.merkle import NodeKey
from chatledger.store.base import (
    CheckpointRow,
    EntryRow,
    ErasureRow,
    PayloadRow,
    SubjectKeyRow,
)
from chatledger.store.postgres_schema import apply_migrations, current_schema

Conn = psycopg.Connection[Any]

_ENTRY_COLUMNS = (
    "seq, ts, category, action, actor_id, entity_type, entity_id, outcome, subject, chatbot_id, "
    "conversation_id, body, leaf_hash, mac"
)
_KEY_COLUMNS = "key_ref, subject_ref, wrapped, created_at, erased_at, erasure_seq"

_TOKENS = re.compile(
    r"""
      '(?:[^']|'')*'            # a string literal ('' escapes a quote)
    | "(?:[^"]|"")*"            # a quoted identifier
    | --[^\n]*                  # a line comment
    | /\*.*?\*/                 # a block comment
    | \$([A-Za-z_]\w*|)\$.*?\$\1\$  # a dollar-quoted body
    | [?%]
    """,
    re.VERBOSE | re.DOTALL,
)


def qmark_to_format(sql: str) -> str:
    """Translate ``?`` placeholders to ``%s`` and escape ``%`` as ``%%`` for psycopg.

    A ``?`` inside a quoted string, a quoted identifier, a comment or a dollar-quoted body is
    kept; every literal ``%`` is doubled, wherever it stands, because psycopg reads ``%``
    everywhere in a query that has parameters.
    """

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        return "%s" if text == "?" else text.replace("%", "%%")

    return _TOKENS.sub(replace, sql)


def _run(conn: Conn, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    cur = conn.execute(qmark_to_format(sql), tuple(params)) if params else conn.execute(sql)
    return cur.fetchall() if cur.description is not None else []


def lock_key(schema: str) -> int:
    """The advisory-lock key of the log kept in ``schema`` (a signed 64-bit integer)."""
    digest = hashlib.sha256(f"chatledger.ledger:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"postgresql://{params.get('user') or ''}@{host}:{port}/{params.get('dbname') or ''}"


def _nodes_query(conn: Conn, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
    """Fetch perfect-subtree hashes: level 0 from the entries, higher levels from nodes."""
    out: dict[NodeKey, bytes] = {}
    leaves = [idx for level, idx in keys if level == 0]
    inner = [(level, idx) for level, idx in keys if level > 0]
    if leaves:
        rows = conn.execute(
            "SELECT seq, leaf_hash FROM ledger_entries WHERE seq = ANY(%s::bigint[])", (leaves,)
        ).fetchall()
        out.update({(0, int(seq)): bytes(h) for seq, h in rows})
    if inner:
        rows = conn.execute(
            "SELECT n.level, n.idx, n.hash FROM ledger_nodes n "
            "JOIN unnest(%s::integer[], %s::bigint[]) AS k(level, idx) "
            "ON n.level = k.level AND n.idx = k.idx",
            ([k[0] for k in inner], [k[1] for k in inner]),
        ).fetchall()
        out.update({(int(level), int(idx)): bytes(h) for level, idx, h in rows})
    return out


def _entry(row: tuple[Any, ...]) -> EntryRow:
    return EntryRow(*row)


_HEAD_SQL = "SELECT seq, leaf_hash FROM ledger_entries ORDER BY seq DESC LIMIT 1"

Params = tuple[Any, ...]
_MAX_CACHED_KEYS = 100_000


def _unnest_insert(table: str, columns: str, types: str) -> str:
    """One INSERT of many rows, each column sent as one array parameter."""
    arrays = ", ".join(f"%b::{t}[]" for t in types.split())
    return f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})"


_INSERT_ENTRIES = _unnest_insert(
    "ledger_entries",
    _ENTRY_COLUMNS,
    "bigint text text text text text text text text text text bytea bytea bytea",
)
_INSERT_NODES = _unnest_insert("ledger_nodes", "level, idx, hash", "integer bigint bytea")
_INSERT_PAYLOADS = _unnest_insert(
    "ledger_payloads", "seq, key_ref, nonce, ciphertext", "bigint text bytea bytea"
)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> Params:
    return tuple([row[i] for row in rows] for i in range(width))


class PostgresWriteTxn:
    """One write transaction on the writer connection, holding the log's advisory lock.

    Statements whose result nobody waits for (the inserts, savepoints) are queued and sent
    in one pipeline with the next statement that needs an answer, or with the COMMIT: a
    group commit costs two round trips (lock and head; everything else and COMMIT) plus one
    per subject seen for the first time.
    """

    def __init__(
        self,
        conn: Conn,
        head: tuple[int, bytes | None] | None = None,
        known_keys: dict[str, SubjectKeyRow] | None = None,
        key_epoch: int | None = None,
    ) -> None:
        self.conn = conn
        self._head = head
        self._key_epoch = key_epoch
        self._queued: list[tuple[str, Params | None]] = []
        self._savepoints = 0
        self._known_keys = known_keys if known_keys is not None else {}
        self.found_keys: dict[str, SubjectKeyRow] = {}
        """Live keys read in this transaction that were committed before it began."""
        self.inserted_keys: set[str] = set()
        self.destroyed_keys = False

    def _queue(self, sql: str, params: Params | None = None) -> None:
        self._head = None
        self._queued.append((sql, params))

    def _send_queued(self) -> None:
        for sql, params in self._queued:
            self.conn.execute(sql, params)
        self._queued.clear()

    def _ask(self, sql: str, params: Params | None = None) -> psycopg.Cursor[Any]:
        """Send what is queued and ``sql`` in one round trip; the cursor holds the answer."""
        if not self._queued:
            return self.conn.execute(sql, params)
        with self.conn.pipeline():
            self._send_queued()
            cur = self.conn.execute(sql, params)
        return cur

    def commit(self) -> None:
        with self.conn.pipeline():
            self._send_queued()
            self.conn.commit()

    def head(self) -> tuple[int, bytes | None]:
        if self._head is None:
            row = self._ask(_HEAD_SQL).fetchone()
            self._head = (0, None) if row is None else (int(row[0]) + 1, bytes(row[1]))
        return self._head

    def fetch_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        self._flush()
        return _nodes_query(self.conn, keys)

    def _flush(self) -> None:
        if self._queued:
            with self.conn.pipeline():
                self._send_queued()

    def insert_entries(self, rows: Sequence[EntryRow]) -> None:
        if rows:
            self._queue(
                _INSERT_ENTRIES,
                _columns(
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
                    14,
                ),
            )

    def insert_nodes(self, rows: Sequence[tuple[int, int, bytes]]) -> None:
        if rows:
            self._queue(_INSERT_NODES, _columns(rows, 3))

    def insert_payloads(self, rows: Sequence[PayloadRow]) -> None:
        if rows:
            self._queue(
                _INSERT_PAYLOADS,
                _columns([(r.seq, r.key_ref, r.nonce, r.ciphertext) for r in rows], 4),
            )

    def insert_checkpoint(self, row: CheckpointRow) -> None:
        self._queue(
            "INSERT INTO ledger_checkpoints (size, ts, note) VALUES (%s, %s, %s) "
            "ON CONFLICT (size) DO NOTHING",
            (row.size, row.ts, row.note),
        )

    def live_subject_key(self, subject_ref: str) -> SubjectKeyRow | None:
        known = self._known_keys.get(subject_ref)
        if known is not None and not self.destroyed_keys:
            return known
        row = self._ask(
            f"SELECT {_KEY_COLUMNS} FROM subject_keys WHERE subject_ref = %s "
            "AND wrapped IS NOT NULL ORDER BY created_at DESC LIMIT 1",
            (subject_ref,),
        ).fetchone()
        if row is None:
            return None
        key = SubjectKeyRow(*row)
        if key.key_ref not in self.inserted_keys:
            self.found_keys[subject_ref] = key
        return key

    def insert_subject_key(self, row: SubjectKeyRow) -> None:
        self.inserted_keys.add(row.key_ref)
        self._queue(
            f"INSERT INTO subject_keys ({_KEY_COLUMNS}) VALUES (%s, %s, %s, %s, NULL, NULL)",
            (row.key_ref, row.subject_ref, row.wrapped, row.created_at),
        )

    def erase_subject_keys(self, subject_ref: str, erased_at: str, erasure_seq: int) -> int:
        self.destroyed_keys = True
        row = self._ask(
            "SELECT ledger_destroy_subject_keys(%s, %s, %s)",
            (subject_ref, erased_at, erasure_seq),
        ).fetchone()
        return int(row[0]) if row else 0

    def keys_destroyed_since(self, seq: int) -> bool:
        # The newest erasure that destroyed a key was read with the lock (the key epoch).
        return self.destroyed_keys or (self._key_epoch is not None and self._key_epoch >= seq)

    def payload_seqs_for_subject(self, subject_ref: str) -> list[int]:
        rows = self._ask(
            # A payload is sealed under its entry's subject key: the subject index finds them.
            "SELECT p.seq FROM ledger_entries e JOIN ledger_payloads p ON p.seq = e.seq "
            "WHERE e.subject = %s ORDER BY p.seq",
            (subject_ref,),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def record_payload_erasures(
        self, seqs: Sequence[int], erasure_seq: int, reason: str, *, delete: bool
    ) -> None:
        if seqs:
            self._ask(
                "SELECT ledger_record_payload_erasures(%s::bigint[], %s, %s, %s)",
                (list(seqs), erasure_seq, reason, delete),
            )

    def savepoint(self) -> None:
        self._savepoints += 1
        self._queue(f"SAVEPOINT sp{self._savepoints}")

    def release_savepoint(self) -> None:
        self._queue(f"RELEASE SAVEPOINT sp{self._savepoints}")
        self._savepoints -= 1

    def rollback_savepoint(self) -> None:
        self._queue(f"ROLLBACK TO SAVEPOINT sp{self._savepoints}")
        self._queue(f"RELEASE SAVEPOINT sp{self._savepoints}")
        self._savepoints -= 1

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders) of the platform's own tables."""
        self._head = None
        self._flush()
        return _run(self.conn, sql, params)


class PostgresStore:
    """The ledger store in one PostgreSQL schema (the first of the URL's ``search_path``)."""

    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        lock_timeout: float = 30.0,
        application_name: str = "chatledger",
    ) -> None:
        self.url = url
        self.display_url = describe(url)
        self._lock_timeout_ms = int(lock_timeout * 1000)
        self._application_name = application_name
        self._write_lock = threading.Lock()
        # Live subject keys read by earlier write transactions (writer thread only); valid
        # while no key is destroyed, which the epoch read under the lock tells.
        self._live_keys: dict[str, SubjectKeyRow] = {}
        self._key_epoch: int | None = None
        self._local = threading.local()
        self._thread_conns: list[Conn] = []
        self._threads_lock = threading.Lock()
        self._closed = False
        self._writer: Conn = self._connect_writer()
        try:
            apply_migrations(self._writer)
            self.schema = current_schema(self._writer)
            self._writer.rollback()
        except psycopg.Error as exc:
            self._writer.close()
            raise StorageError(f"cannot prepare {self.display_url}: {exc}") from exc
        except BaseException:
            self._writer.close()
            raise
        self.lock_key = lock_key(self.schema)
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"autocommit": True, "application_name": f"{application_name}-reader"},
            configure=_configure_reader,
            open=True,
            name="chatledger-readers",
            num_workers=1,
            timeout=30.0,
        )

    # -- writing ---------------------------------------------------------------------------

    def _connect_writer(self) -> Conn:
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=False,
                application_name=f"{self._application_name}-writer",
                connect_timeout=10,
            )
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to {self.display_url}: {exc}") from exc
        conn.isolation_level = IsolationLevel.READ_COMMITTED
        try:
            # Acknowledged means durable: the commit waits for the WAL flush.
            conn.execute("SET synchronous_commit = on")
            conn.execute(f"SET lock_timeout = {self._lock_timeout_ms}")
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise StorageError(f"cannot configure the connection: {exc}") from exc
        return conn

    @contextmanager
    def write(self) -> Iterator[PostgresWriteTxn]:
        with self._write_lock:
            if self._closed:
                raise StorageError("the store is closed")
            if self._writer.closed or self._writer.broken:
                self._writer.close()
                self._writer = self._connect_writer()  # the server restarted: start over
            conn, head, epoch = self._lock(self._writer)
            if epoch != self._key_epoch:  # a key was destroyed since: forget them all
                self._live_keys.clear()
                self._key_epoch = epoch
            txn = PostgresWriteTxn(conn, head, self._live_keys, epoch)
            try:
                yield txn
            except BaseException:
                self._rollback(conn)
                raise
            try:
                txn.commit()
            except psycopg.Error as exc:
                self._rollback(conn)
                raise StorageError(f"commit failed: {exc}") from exc
            if txn.destroyed_keys:
                self._live_keys.clear()
                self._key_epoch = None
            else:
                if len(self._live_keys) > _MAX_CACHED_KEYS:
                    self._live_keys.clear()
                self._live_keys.update(txn.found_keys)

    def _lock(self, conn: Conn) -> tuple[Conn, tuple[int, bytes | None], int | None]:
        """Take the log's lock, read the head and the key epoch (the last erasure that
        destroyed a subject key), in one round trip: in READ COMMITTED the later statements
        take their snapshots once the first has the lock, so they see all that the previous
        holder committed. If the connection turns out dead (nothing was written on it yet),
        reconnect once and try again."""
        for attempt in (1, 2):
            try:
                with conn.pipeline():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))
                    cur = conn.execute(_HEAD_SQL)
                    epoch_cur = conn.execute("SELECT max(erasure_seq) FROM subject_keys")
                row = cur.fetchone()
                head = (0, None) if row is None else (int(row[0]) + 1, bytes(row[1]))
                epoch = epoch_cur.fetchone()
                return conn, head, (None if epoch is None else epoch[0])
            except psycopg.OperationalError as exc:
                if not conn.broken or attempt == 2:
                    self._rollback(conn)
                    raise StorageError(f"cannot start a write transaction: {exc}") from exc
                conn.close()
                conn = self._writer = self._connect_writer()
            except psycopg.Error as exc:
                self._rollback(conn)
                raise StorageError(f"cannot start a write transaction: {exc}") from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _rollback(conn: Conn) -> None:
        if conn.closed or conn.broken:
            return
        try:
            conn.rollback()
        except psycopg.Error:
            conn.close()

    # -- reading ---------------------------------------------------------------------------

    def read_connection(self) -> Conn:
        """This thread's read-only connection (autocommit), for components with their own
        PostgreSQL SQL. Closed with the store."""
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            if self._closed:
                raise StorageError("the store is closed")
            try:
                conn = psycopg.connect(
                    self.url,
                    autocommit=True,
                    application_name=f"{self._application_name}-reader",
                    connect_timeout=10,
                )
                _configure_reader(conn)
            except psycopg.Error as exc:
                raise StorageError(f"cannot connect to {self.display_url}: {exc}") from exc
            self._local.conn = conn
            with self._threads_lock:
                self._thread_conns.append(conn)
        return conn

    @contextmanager
    def _reader(self) -> Iterator[Conn]:
        if self._closed:
            raise StorageError("the store is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StorageError(f"no database connection available: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise StorageError(f"reading from {self.display_url} failed: {exc}") from exc

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reader() as conn:
            return conn.execute(sql, tuple(params)).fetchall()

    def size(self) -> int:
        rows = self._all("SELECT max(seq) FROM ledger_entries")
        return 0 if rows[0][0] is None else int(rows[0][0]) + 1

    def entries(self, start: int, end: int, *, batch: int = 5000) -> Iterator[EntryRow]:
        pos = start
        while pos < end:
            upto = min(end, pos + batch)
            rows = self._all(
                f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries "
                "WHERE seq >= %s AND seq < %s ORDER BY seq",
                (pos, upto),
            )
            for row in rows:
                yield _entry(row)
            pos = upto

    def entry_batches(
        self, start: int, end: int, *, batch: int = 5000
    ) -> Iterator[list[tuple[Any, ...]]]:
        for pos in range(start, end, batch):
            yield self._all(
                f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries "
                "WHERE seq >= %s AND seq < %s ORDER BY seq",
                (pos, min(end, pos + batch)),
            )

    def payload_batches(
        self, start: int, end: int, *, batch: int = 5000
    ) -> Iterator[list[tuple[Any, ...]]]:
        for pos in range(start, end, batch):
            yield self._all(
                "SELECT seq, key_ref, nonce, ciphertext FROM ledger_payloads "
                "WHERE seq >= %s AND seq < %s ORDER BY seq",
                (pos, min(end, pos + batch)),
            )

    def entry(self, seq: int) -> EntryRow | None:
        rows = self._all(f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries WHERE seq = %s", (seq,))
        return _entry(rows[0]) if rows else None

    def fetch_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        with self._reader() as conn:
            return _nodes_query(conn, keys)

    def nodes(self, level: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        pos = start
        while pos < end:
            rows = self._all(
                "SELECT idx, hash FROM ledger_nodes WHERE level = %s AND idx >= %s AND idx < %s "
                "ORDER BY idx LIMIT 5000",
                (level, pos, end),
            )
            if not rows:
                return
            for idx, h in rows:
                yield int(idx), bytes(h)
            pos = int(rows[-1][0]) + 1

    def payloads(self, start: int, end: int) -> Iterator[PayloadRow]:
        pos = start
        while pos < end:
            rows = self._all(
                "SELECT seq, key_ref, nonce, ciphertext FROM ledger_payloads "
                "WHERE seq >= %s AND seq < %s ORDER BY seq LIMIT 5000",
                (pos, end),
            )
            if not rows:
                return
            for row in rows:
                yield PayloadRow(*row)
            pos = int(rows[-1][0]) + 1

    def payload(self, seq: int) -> PayloadRow | None:
        rows = self._all(
            "SELECT seq, key_ref, nonce, ciphertext FROM ledger_payloads WHERE seq = %s", (seq,)
        )
        return PayloadRow(*rows[0]) if rows else None

    def subject_key(self, key_ref: str) -> SubjectKeyRow | None:
        rows = self._all(f"SELECT {_KEY_COLUMNS} FROM subject_keys WHERE key_ref = %s", (key_ref,))
        return SubjectKeyRow(*rows[0]) if rows else None

    def subject_keys(self) -> Iterator[SubjectKeyRow]:
        for row in self._all(f"SELECT {_KEY_COLUMNS} FROM subject_keys ORDER BY key_ref"):
            yield SubjectKeyRow(*row)

    def checkpoints(self) -> list[CheckpointRow]:
        rows = self._all("SELECT size, ts, note FROM ledger_checkpoints ORDER BY size")
        return [CheckpointRow(*row) for row in rows]

    def latest_checkpoint(self) -> CheckpointRow | None:
        rows = self._all("SELECT size, ts, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1")
        return CheckpointRow(*rows[0]) if rows else None

    def payload_erasures(self) -> dict[int, ErasureRow]:
        rows = self._all("SELECT seq, erasure_seq, reason FROM ledger_payload_erasures")
        return {int(r[0]): ErasureRow(*r) for r in rows}

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read-only query (``?`` placeholders) on the platform's own tables."""
        with self._reader() as conn:
            return _run(conn, sql, params)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.close()
        with self._threads_lock:
            for conn in self._thread_conns:
                conn.close()
            self._thread_conns.clear()
        with self._write_lock:
            self._writer.close()


def _configure_reader(conn: Conn) -> None:
    conn.execute("SET default_transaction_read_only = on")
