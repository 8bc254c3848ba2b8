"""The audit index on PostgreSQL: full text of messages, answers and feedback, and role and
severity facets, behind the same interface as the SQLite one (audit/textindex.py).

Tables (migration 10, :mod:`chatledger.store.pg_schema_audit`): ``audit_text`` (seq, body,
``tsv``, GIN), ``audit_facets`` (seq, role, severity) and ``audit_index_state``.

Same results as SQLite's FTS5 ``unicode61 remove_diacritics 2``: the words of a text are found
and folded (case and diacritics) in Python, by the very functions the snippets use, and the
``tsvector`` is built from them with their positions; a query becomes a ``tsquery`` the same
way (every term required, ``"quoted phrases"`` as ``<->`` chains, ``word*`` as a prefix). No
text search configuration, stemmer or stop-word list of the server is involved, so the
results do not depend on the server's configuration or locale. A lexeme keeps at most 256
positions and positions stop at 16,383 (PostgreSQL's limits), which only matters for phrases
past the 16,383rd word of one text.

Following the ledger: one process at a time indexes a log (a session advisory lock per
schema; the others skip their catch-up and search with the watermark as it is). The indexer
reads the entries past its watermark, reads their payloads through :meth:`Ledger.read`
(which decrypts them), and writes facets, texts and the new watermark in one short
transaction on its own connection, never the ledger's writer.

Erasure: every catch-up ends with a sweep of the erasures recorded since the last sweep
(payload erasure records and destroyed subject keys), deleting those entries' text; a text
is inserted only if its payload is still readable when the insert runs, and inserts and sweeps
hold the same lock, so an erasure that commits after that check is seen by the sweep that
ends the catch-up. A search also drops any text match whose payload is no longer readable and
:meth:`forget`s it at once. Deleted rows leave the table files when they are vacuumed:
``audit_text`` asks autovacuum to vacuum it after any deletion, and :meth:`compact` runs
``VACUUM`` itself when the connected role owns the table.

On a read-only replica (hot standby) nothing is written: searches use the index as the
primary's indexer left it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
import psycopg

from chatledger.audit.textindex import (
    _STATE_COMPACT,
    _STATE_ERASURE,
    _STATE_TEXT,
    _TERM,
    _TOKEN,
    BATCH,
    TEXT_FIELDS,
    IndexState,
    Match,
    _fold,
    clean_text,
    make_snippet,
    query_terms,
    to_fts_query,
)
from chatledger.errors import ChatLedgerError, InvalidInput, StorageError
from chatledger.ledger.service import Ledger
from chatledger.store.postgres_schema import apply_migrations

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
T = TypeVar("T")

MAX_POSITIONS = 256
"""Positions a tsvector keeps per lexeme."""
MAX_POSITION = 16_383
"""The largest position a tsvector stores (later words share it)."""
MAX_LEXEME_BYTES = 2_046
"""Longer words are left out of the tsvector (PostgreSQL refuses lexemes of 2 KB)."""
MAX_TSVECTOR_BYTES = 900_000
"""Lexeme bytes kept per text, under the tsvector's 1 MB limit."""
READERS = 3
"""Threads reading payloads while indexing (each :meth:`Ledger.read` is three round trips
through the store's reader pool, whose default size is 4: one is left for searches)."""


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_text(text: str) -> str:
    """The ``tsvector`` of a text in its input syntax: every word as :func:`make_snippet`
    sees it (letters and digits), folded, with its 1-based positions."""
    positions: dict[str, list[int]] = {}
    size = 0
    for i, m in enumerate(_TOKEN.finditer(text), start=1):
        word = _fold(m.group())
        found = positions.get(word)
        if found is None:
            length = len(word.encode())
            if length > MAX_LEXEME_BYTES or size + length > MAX_TSVECTOR_BYTES:
                continue
            size += length
            positions[word] = [min(i, MAX_POSITION)]
        elif len(found) < MAX_POSITIONS and found[-1] < MAX_POSITION:
            found.append(min(i, MAX_POSITION))
    return " ".join(f"{_quote(w)}:{','.join(map(str, p))}" for w, p in positions.items())


def to_tsquery_text(q: str) -> str:
    """A user's query as a ``tsquery`` in its input syntax, with the same meaning as
    :func:`~chatledger.audit.textindex.to_fts_query` on SQLite: words and "quoted phrases",
    all required; a trailing ``*`` on a word makes it (its last word) a prefix. The user's
    operators are words, never syntax. Empty when no term holds a letter or digit (an
    ``_``): such a query finds nothing, as on SQLite."""
    to_fts_query(q)  # validates, with the same messages
    parts: list[str] = []
    for match in _TERM.finditer(q):
        phrase, word = match.group(1), match.group(2)
        text = phrase if phrase is not None else word
        lexemes = [_quote(_fold(t)) for t in _TOKEN.findall(text)]
        if not lexemes:
            continue
        if phrase is None and word.endswith("*"):
            lexemes[-1] += ":*"
        parts.append(lexemes[0] if len(lexemes) == 1 else "(" + " <-> ".join(lexemes) + ")")
    return " & ".join(parts)


def advisory_key(what: str, schema: str) -> int:
    """A session advisory-lock key for ``what`` in the log kept in ``schema``."""
    digest = hashlib.sha256(f"chatledger.{what}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def connect(ledger: Ledger, purpose: str) -> Conn:
    """A connection of our own to the ledger's database (autocommit; transactions are
    explicit), never the ledger's writer."""
    store = ledger.store
    url = getattr(store, "url", None)
    if getattr(store, "dialect", "") != "postgresql" or not isinstance(url, str):
        raise InvalidInput(f"{purpose} needs a PostgreSQL store")
    try:
        conn = psycopg.connect(
            url, autocommit=True, application_name=f"chatledger-{purpose}", connect_timeout=10
        )
    except psycopg.Error as exc:
        display = getattr(store, "display_url", "the database")
        raise StorageError(f"cannot connect to {display}: {exc}") from exc
    return conn


def schema_ready(ledger: Ledger) -> bool:
    row = ledger.store.query(
        "SELECT to_regclass('audit_text') IS NOT NULL AND to_regclass('audit_facets') IS NOT "
        "NULL AND to_regclass('audit_index_state') IS NOT NULL"
    )
    return bool(row and row[0][0])


def ensure_schema(ledger: Ledger) -> None:
    """Apply migration 10 if the store was opened before the migration was registered (it
    registers when this package is imported). As the application role this stops with a
    message naming the command to run as the owner."""
    if schema_ready(ledger):
        return
    conn = connect(ledger, "migrate")
    try:
        conn.autocommit = False
        apply_migrations(conn)
    except psycopg.Error as exc:
        raise StorageError(f"cannot create the audit index tables: {exc}") from exc
    finally:
        conn.close()


def _state(ledger: Ledger, name: str, default: int = 0) -> int:
    rows = ledger.store.query("SELECT value FROM audit_index_state WHERE name = ?", (name,))
    return int(rows[0][0]) if rows else default


def _read_state(conn: Conn, name: str, *, lock: bool = False) -> int:
    row = conn.execute(
        "SELECT value FROM audit_index_state WHERE name = %s" + (" FOR UPDATE" if lock else ""),
        (name,),
    ).fetchone()
    return int(row[0]) if row else 0


def _write_state(conn: Conn, name: str, value: int) -> None:
    conn.execute(
        "INSERT INTO audit_index_state (name, value) VALUES (%s, %s) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


_INSERT_FACETS = """
INSERT INTO audit_facets (seq, role, severity)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[])
ON CONFLICT (seq) DO UPDATE SET role = excluded.role, severity = excluded.severity
"""

# Keys by primary key, one look-up per payload (as a join, the planner hashes the key table).
_LIVE = "(SELECT k.wrapped IS NOT NULL FROM subject_keys k WHERE k.key_ref = p.key_ref)"

# A text goes in only if its payload is still readable as the statement runs.
_INSERT_TEXTS = f"""
INSERT INTO audit_text (seq, body, tsv)
SELECT t.seq, t.body, t.tsv::tsvector
FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS t(seq, body, tsv)
WHERE EXISTS (SELECT 1 FROM ledger_payloads p WHERE p.seq = t.seq AND {_LIVE})
ON CONFLICT (seq) DO UPDATE SET body = excluded.body, tsv = excluded.tsv
"""

_PRESENT = f"SELECT p.seq FROM ledger_payloads p WHERE p.seq = ANY(?) AND {_LIVE}"

_SWEEP_ERASURES = """
DELETE FROM audit_text
WHERE seq IN (SELECT seq FROM ledger_payload_erasures WHERE erasure_seq >= %s)
"""

_SWEEP_SUBJECTS = """
DELETE FROM audit_text
WHERE seq IN (
    SELECT e.seq FROM ledger_entries e
    WHERE e.subject IN (SELECT subject_ref FROM subject_keys WHERE erasure_seq >= %s)
)
"""


def _payload_text(ledger: Ledger, seq: int, action: str) -> tuple[int, str | None]:
    """The searchable text of one entry (None when it has none or it cannot be read)."""
    try:
        record = ledger.read(seq)
    except ChatLedgerError:
        log.warning("audit index: cannot read payload of entry %d", seq)
        return seq, None
    if record.payload_status != "present" or record.payload is None:
        return seq, None
    value = record.payload.get(TEXT_FIELDS[action])
    if isinstance(value, str) and value.strip():
        return seq, clean_text(value)
    return seq, None


class _Connection:
    """The index's own connection, opened on first use, closed when the ledger goes away
    (a finalizer) or by :meth:`PgAuditIndex.close`."""

    def __init__(self) -> None:
        self.conn: Conn | None = None

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()


class PgAuditIndex:
    """The text index and facets of one PostgreSQL log (schema). Thread-safe; one per
    ledger object (see :func:`~chatledger.audit.textindex.index_for`).

    Reads go through the store's reader pool and take no lock. Writes use the index's own
    connection, a short unit at a time under ``_conn_lock``; one catch-up runs at a time per
    process (``_indexing``) and per log (the advisory lock)."""

    dialect = "postgresql"

    def __init__(self, ledger: Ledger) -> None:
        if getattr(ledger.store, "dialect", "") != "postgresql":
            raise InvalidInput("this audit index needs the PostgreSQL store")
        # A weak reference: index_for() keeps indexes in a WeakKeyDictionary keyed by the
        # ledger, so the index must not keep its ledger alive.
        self._ledger = weakref.ref(ledger)
        self.schema = str(getattr(ledger.store, "schema", "public"))
        self.lock_key = advisory_key("audit_index", self.schema)
        self._indexing = threading.Lock()
        self._conn_lock = threading.Lock()
        self._holder = _Connection()
        self._finalizer = weakref.finalize(ledger, self._holder.close)
        self._ready = False

    @property
    def ledger(self) -> Ledger:
        ledger = self._ledger()
        if ledger is None:
            raise StorageError("the ledger of this audit index is gone")
        return ledger

    def _check_ready(self) -> None:
        if not self._ready:
            ensure_schema(self.ledger)
            self._ready = True

    # -- our connection ---------------------------------------------------------------------

    def _write(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` on our connection (reconnected after a failure); database errors
        become StorageError."""
        self._check_ready()
        with self._conn_lock:
            conn = self._holder.conn
            if conn is None or conn.closed or conn.broken:
                self._holder.close()
                conn = self._holder.conn = connect(self.ledger, "audit-index")
            try:
                return fn(conn)
            except psycopg.Error as exc:
                if conn.broken:
                    self._holder.close()
                raise StorageError(f"audit index: {exc}") from exc

    def close(self) -> None:
        """Close the index's connection (it reopens on next use)."""
        with self._conn_lock:
            self._holder.close()

    def _standby(self) -> bool:
        """Whether the store's server is a read-only replica: the index is then used as the
        primary's indexer left it, and nothing is written."""
        self._check_ready()
        return bool(self.ledger.store.query("SELECT pg_is_in_recovery()")[0][0])

    # -- reading ----------------------------------------------------------------------------

    def state(self) -> IndexState:
        self._check_ready()
        rows = self.ledger.store.query(
            "SELECT (SELECT value FROM audit_index_state WHERE name = ?), "
            "(SELECT max(seq) FROM ledger_entries)",
            (_STATE_TEXT,),
        )
        done, last = rows[0]
        return IndexState(int(done or 0), 0 if last is None else int(last) + 1)

    def watermark(self) -> int:
        self._check_ready()
        return _state(self.ledger, _STATE_TEXT)

    def erasures_pending(self) -> bool:
        """Whether erasures were recorded since the last sweep (two indexed look-ups)."""
        self._check_ready()
        ledger = self.ledger
        since = _state(ledger, _STATE_ERASURE)  # a value, not a subquery: the index is used
        rows = ledger.store.query(
            "SELECT EXISTS (SELECT 1 FROM ledger_payload_erasures WHERE erasure_seq >= ?) "
            "OR EXISTS (SELECT 1 FROM subject_keys WHERE erasure_seq >= ?)",
            (since, since),
        )
        return bool(rows[0][0])

    def compact_pending(self) -> bool:
        self._check_ready()
        return bool(_state(self.ledger, _STATE_COMPACT))

    def text_query(self, q: str) -> str:
        """The query as this index's search expression (a tsquery)."""
        return to_tsquery_text(q)

    def snippets(self, q: str, seqs: Sequence[int]) -> dict[int, Match]:
        """Highlighted snippets of the given entries, from the indexed text."""
        if not seqs:
            return {}
        rows = self.ledger.store.query(
            "SELECT seq, body FROM audit_text WHERE seq = ANY(?)", (list(seqs),)
        )
        terms = query_terms(q)
        return {int(seq): make_snippet(str(body), terms) for seq, body in rows}

    def indexed_text(self, seqs: Iterable[int]) -> set[int]:
        """Which of these entries have text in the index."""
        rows = self.ledger.store.query(
            "SELECT seq FROM audit_text WHERE seq = ANY(?)", (sorted(set(seqs)),)
        )
        return {int(r[0]) for r in rows}

    # -- following the ledger ---------------------------------------------------------------

    def catch_up(self, *, max_entries: int | None = None, budget_s: float | None = None) -> int:
        """Index entries past the watermark (at most ``max_entries`` / ``budget_s``), then
        sweep erasures. Returns how many entries were indexed: 0 at once when another thread
        or process is indexing this log (a search then uses the watermark as it is)."""
        deadline = time.monotonic() + budget_s if budget_s is not None else None
        if self._standby() or not self._indexing.acquire(blocking=False):
            return 0
        try:
            locked = self._advisory_lock(wait=False)
            if locked is None:
                return 0
            done = 0
            try:
                ledger = self.ledger
                size = ledger.size()
                nxt = _state(ledger, _STATE_TEXT)
                while nxt < size:
                    if max_entries is not None and done >= max_entries:
                        break
                    if deadline is not None and done and time.monotonic() >= deadline:
                        break
                    step = BATCH if max_entries is None else min(BATCH, max_entries - done)
                    end = min(size, nxt + step)
                    done += end - nxt
                    nxt = self._index_range(nxt, end)
                self._sweep()
            finally:
                self._advisory_unlock(locked)
            return done
        finally:
            self._indexing.release()

    def _advisory_lock(self, *, wait: bool) -> Conn | None:
        """Take the log's indexing lock on our connection (the connection holding it), or
        None if another process holds it and ``wait`` is false."""

        def lock(conn: Conn) -> Conn | None:
            if wait:
                conn.execute("SELECT pg_advisory_lock(%s)", (self.lock_key,))
                return conn
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.lock_key,)).fetchone()
            return conn if row and row[0] else None

        return self._write(lock)

    def _advisory_unlock(self, holder: Conn) -> None:
        """Release the lock if the connection that took it is still ours (a connection
        that broke released it with its session)."""
        with self._conn_lock:
            if self._holder.conn is holder and not holder.broken:
                try:
                    holder.execute("SELECT pg_advisory_unlock(%s)", (self.lock_key,))
                except psycopg.Error:
                    self._holder.close()

    def _index_range(self, start: int, end: int) -> int:
        ledger = self.ledger
        rows = ledger.store.query(
            "SELECT seq, action, body FROM ledger_entries WHERE seq >= ? AND seq < ? ORDER BY seq",
            (start, end),
        )
        facets: list[tuple[int, str | None, str | None]] = []
        candidates: list[tuple[int, str]] = []
        for seq, action, body in rows:
            data = orjson.loads(body)
            role = data.get("actor", {}).get("role")
            severity = data.get("attributes", {}).get("severity")
            role = role if isinstance(role, str) else None
            severity = severity if isinstance(severity, str) else None
            if role is not None or severity is not None:
                facets.append((int(seq), role, severity))
            if action in TEXT_FIELDS and "payload" in data:
                candidates.append((int(seq), str(action)))
        texts: list[tuple[int, str, str]] = []
        if candidates:
            wanted = [seq for seq, _ in candidates]
            present = {int(r[0]) for r in ledger.store.query(_PRESENT, (wanted,))}
            readable = [(seq, action) for seq, action in candidates if seq in present]
            with ThreadPoolExecutor(READERS, thread_name_prefix="audit-index-read") as pool:
                found = list(pool.map(lambda c: _payload_text(ledger, *c), readable))
            texts = [(seq, text, tsvector_text(text)) for seq, text in found if text is not None]

        def write(conn: Conn) -> int:
            with conn.transaction():
                current = _read_state(conn, _STATE_TEXT, lock=True)
                if current != start:  # indexed meanwhile (the advisory lock makes it rare)
                    return max(current, start)
                if facets:
                    conn.execute(_INSERT_FACETS, [list(c) for c in zip(*facets, strict=True)])
                if texts:
                    conn.execute(_INSERT_TEXTS, [list(c) for c in zip(*texts, strict=True)])
                _write_state(conn, _STATE_TEXT, end)
            return end

        return self._write(write)

    # -- erasure ----------------------------------------------------------------------------

    def sweep(self) -> int:
        """Delete from the text index everything erased since the last sweep (waits for a
        catch-up running in this or another process to finish)."""
        if self._standby():
            return 0
        with self._indexing:
            locked = self._advisory_lock(wait=True)
            assert locked is not None
            try:
                return self._sweep()
            finally:
                self._advisory_unlock(locked)

    def _sweep(self) -> int:
        ledger = self.ledger

        def sweep(conn: Conn) -> int:
            since = _read_state(conn, _STATE_ERASURE)
            # Read the size first: an erasure recorded with erasure_seq below it has
            # committed (its event entry is in the same transaction), so the deletes see it.
            size = ledger.size()
            if since >= size:
                return 0
            with conn.transaction():
                deleted = conn.execute(_SWEEP_ERASURES, (since,)).rowcount
                deleted += conn.execute(_SWEEP_SUBJECTS, (since,)).rowcount
                if deleted:
                    _write_state(conn, _STATE_COMPACT, 1)
                _write_state(conn, _STATE_ERASURE, size)
            return int(deleted)

        deleted = self._write(sweep)
        if deleted:
            log.info("audit index: removed the text of %d erased entries", deleted)
        return deleted

    def forget(self, seqs: Iterable[int]) -> int:
        """Delete these entries' text now (search found their payload no longer readable)."""
        wanted = sorted(set(seqs))
        if not wanted or self._standby():
            return 0

        def forget(conn: Conn) -> int:
            with conn.transaction():
                deleted = conn.execute(
                    "DELETE FROM audit_text WHERE seq = ANY(%s::bigint[])", (wanted,)
                ).rowcount
                if deleted:
                    _write_state(conn, _STATE_COMPACT, 1)
            return int(deleted)

        return self._write(forget)

    def compact(self, *, max_steps: int | None = None) -> bool:
        """After deletions, ``VACUUM audit_text`` so that the deleted rows leave the table
        and its indexes, when the connected role owns the table; otherwise autovacuum does it
        (the table asks for a vacuum after any deletion). Returns True when done."""
        if self._standby():
            return True

        def compact(conn: Conn) -> bool:
            if not _read_state(conn, _STATE_COMPACT):
                return True
            row = conn.execute(
                "SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class "
                "WHERE oid = 'audit_text'::regclass"
            ).fetchone()
            _write_state(conn, _STATE_COMPACT, 0)
            if row and row[0]:
                conn.execute("VACUUM audit_text")
            return True

        return self._write(compact)
