"""The audit index: full text of messages, answers and feedback, and role/severity facets.

It follows the ledger (entries with seq at or above its watermark are not yet indexed), reads
payloads through :meth:`Ledger.read` (which decrypts them), and writes only its own tables on
its own connection, in short transactions: it never holds the ledger's write path.

Erased content leaves the index. Every catch-up also sweeps erasures recorded since the last
sweep (``ledger_payload_erasures`` rows and destroyed subject keys, found through indexes on
their ``erasure_seq``) and deletes the text of those entries; a compaction then merges the
FTS5 segments so that the erased tokens are gone from the index data too (SQLite's
``secure_delete`` zeroes the freed pages). Search adds a last check of its own: a text match
whose payload is no longer readable is dropped from the results (see audit/search.py), so a
search never returns erased text, even in the instant between an erasure and the next sweep.

This module holds SQLite's index (:class:`AuditIndex`) and what both backends share: query
parsing, word folding, snippets. PostgreSQL's index, :class:`~chatledger.audit.pg_textindex.
PgAuditIndex`, keeps the same tables in its own SQL (``tsvector`` and GIN) behind the same
interface (:class:`TextIndex`); :func:`index_for` returns the one of the ledger's store.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
import threading
import time
import unicodedata
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from chatledger.errors import ChatLedgerError, InvalidInput
from chatledger.ledger.service import Ledger
from chatledger.store import schema_audit
from chatledger.store.sqlite_schema import _split

log = logging.getLogger(__name__)


TEXT_FIELDS: dict[str, str] = {
    "message.user": "text",
    "message.answer": "text",
    "message.feedback": "comment",
}
"""Actions whose payload text is searchable, and the payload field holding it."""

BATCH = 1000
"""Entries read and indexed per write transaction."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TERM = re.compile(r'"([^"]*)"|(\S+)')
_WORD = re.compile(r"\w+", re.UNICODE)
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
"""A word as the unicode61 tokenizer sees it: letters and digits (an underscore separates)."""
MAX_QUERY_TERMS = 16


def sqlite_path(ledger: Ledger) -> Path | None:
    """The database file of an embedded (SQLite) ledger, or None for other backends."""
    store = ledger.store
    if getattr(store, "dialect", "") != "sqlite":
        return None
    path = getattr(store, "path", None)
    return Path(path) if path is not None else None


def require_sqlite(ledger: Ledger, what: str) -> Path:
    path = sqlite_path(ledger)
    if path is None:
        raise InvalidInput(f"{what} needs the embedded SQLite store; it is not available here")
    return path


def schema_ready(conn: sqlite3.Connection) -> bool:
    names = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'audit_%'"
        ).fetchall()
    }
    return all(name in names for name in schema_audit.SCHEMA_OBJECTS)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the audit tables and indexes if missing (databases older than migration 10)."""
    if schema_ready(conn):
        return
    with immediate(conn):
        for statement in _split(schema_audit.SQLITE_SCHEMA):
            conn.execute(statement)


def open_writer(path: Path, *, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection of our own for the audit tables (never the ledger's writer)."""
    from chatledger.store.sqlite import connect

    conn = connect(path)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    ensure_schema(conn)
    return conn


def _database_file(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2])


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One short write transaction. It takes the store's process-wide writer lock first (the
    ``.writelock`` file next to the database), so the ledger's writer, which waits on that
    lock, wakes the moment we are done instead of polling SQLite's busy handler."""
    fd = os.open(f"{_database_file(conn)}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def clean_text(text: str) -> str:
    """Control characters become spaces."""
    return _CONTROL.sub(" ", text)


def to_fts_query(q: str) -> str:
    """Turn a user's query into a safe FTS5 expression: words and "quoted phrases", all
    required (AND); a trailing ``*`` on a word makes it a prefix. FTS5 operators typed by
    the user are treated as words, never as syntax."""
    if not isinstance(q, str) or not q.strip():
        raise InvalidInput("q must be a non-empty search text")
    if len(q) > 500:
        raise InvalidInput("q must be at most 500 characters")
    parts: list[str] = []
    for match in _TERM.finditer(q):
        phrase, word = match.group(1), match.group(2)
        if phrase is not None:
            words = _WORD.findall(phrase)
            if words:
                parts.append('"' + " ".join(words) + '"')
            continue
        prefix = word.endswith("*")
        words = _WORD.findall(word)
        if not words:
            continue
        if len(words) > 1:
            parts.append('"' + " ".join(words) + '"' + ("*" if prefix else ""))
        else:
            parts.append('"' + words[0] + '"' + ("*" if prefix else ""))
    if not parts:
        raise InvalidInput("q has no searchable words")
    if len(parts) > MAX_QUERY_TERMS:
        raise InvalidInput(f"q may hold at most {MAX_QUERY_TERMS} terms")
    return " ".join(parts)


@dataclass(frozen=True)
class Match:
    """A highlighted snippet: plain text and the [start, end) offsets of matched terms."""

    snippet: str
    highlights: list[tuple[int, int]]

    def to_json(self) -> dict[str, Any]:
        return {"snippet": self.snippet, "highlights": [list(h) for h in self.highlights]}


def _fold(word: str) -> str:
    """Case- and diacritic-folded, as the ``unicode61 remove_diacritics 2`` tokenizer does."""
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def query_terms(q: str) -> list[tuple[str, bool]]:
    """The folded words of a query, each with whether it is a prefix (for highlighting)."""
    terms: list[tuple[str, bool]] = []
    for match in _TERM.finditer(q):
        phrase, word = match.group(1), match.group(2)
        text = phrase if phrase is not None else word
        prefix = phrase is None and word.endswith("*")
        found = _TOKEN.findall(text)
        for i, token in enumerate(found):
            terms.append((_fold(token), prefix and i == len(found) - 1))
    return terms


def make_snippet(text: str, terms: Sequence[tuple[str, bool]], width: int = 24) -> Match:
    """About ``width`` words of ``text`` around its first matching term, with the offsets of
    the matching words in the snippet. Reads only as far into the text as it needs."""
    exact = {t for t, prefix in terms if not prefix}
    prefixes = tuple(t for t, prefix in terms if prefix)
    tokens: list[tuple[int, int]] = []
    hits: list[int] = []
    before = width // 3
    more = False
    for m in _TOKEN.finditer(text):
        if hits and len(tokens) >= max(hits[0] - before, 0) + width:
            more = True
            break
        word = _fold(m.group())
        if word in exact or (prefixes and word.startswith(prefixes)):
            hits.append(len(tokens))
        tokens.append((m.start(), m.end()))
    if not tokens:
        return Match(text[:200], [])
    first = hits[0] if hits else 0
    start = max(0, min(first - before, len(tokens) - width))
    end = min(len(tokens), start + width)
    lo, hi = tokens[start][0], tokens[end - 1][1]
    lead = "…" if start > 0 else ""
    tail = "…" if more or end < len(tokens) else ""
    shift = len(lead) - lo
    highlights = [(tokens[i][0] + shift, tokens[i][1] + shift) for i in hits if start <= i < end]
    return Match(lead + text[lo:hi] + tail, highlights)


def snippets(conn: sqlite3.Connection, q: str, seqs: Sequence[int]) -> dict[int, Match]:
    """Highlighted snippets of the given entries, from the indexed text."""
    terms = query_terms(q)
    found: dict[int, Match] = {}
    for seq in seqs:
        row = conn.execute("SELECT body FROM audit_text WHERE rowid = ?", (seq,)).fetchone()
        if row is not None:
            found[seq] = make_snippet(str(row[0]), terms)
    return found


@dataclass(frozen=True)
class IndexState:
    indexed_through: int
    """Entries with seq below this are indexed (text and facets)."""
    ledger_size: int

    @property
    def complete(self) -> bool:
        return self.indexed_through >= self.ledger_size

    def to_json(self) -> dict[str, Any]:
        return {
            "indexed_through": self.indexed_through,
            "ledger_size": self.ledger_size,
            "complete": self.complete,
        }


class TextIndex(Protocol):
    """What search, export and the background jobs use of an audit index, on either store."""

    dialect: str

    def state(self) -> IndexState: ...

    def watermark(self) -> int: ...

    def erasures_pending(self) -> bool: ...

    def compact_pending(self) -> bool: ...

    def text_query(self, q: str) -> str:
        """A user's query as this index's search expression (the scanner's ``fts_query``)."""
        ...

    def snippets(self, q: str, seqs: Sequence[int]) -> dict[int, Match]: ...

    def indexed_text(self, seqs: Iterable[int]) -> set[int]: ...

    def catch_up(self, *, max_entries: int | None = None, budget_s: float | None = None) -> int: ...

    def sweep(self) -> int: ...

    def forget(self, seqs: Iterable[int]) -> int: ...

    def compact(self, *, max_steps: int | None = None) -> bool: ...


_STATE_TEXT = "text_next_seq"
_STATE_ERASURE = "erasure_next_seq"
_STATE_COMPACT = "compact_pending"


def read_state(conn: sqlite3.Connection, name: str, default: int = 0) -> int:
    row = conn.execute("SELECT value FROM audit_index_state WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else default


def _write_state(conn: sqlite3.Connection, name: str, value: int) -> None:
    conn.execute(
        "INSERT INTO audit_index_state (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


class AuditIndex:
    """The text index and facets of one SQLite ledger. Thread-safe; one per ledger."""

    dialect = "sqlite"

    def __init__(self, ledger: Ledger) -> None:
        path = sqlite_path(ledger)
        if path is None:
            raise InvalidInput("the audit index needs the embedded SQLite store")
        self.ledger = ledger
        self.path = path
        self._lock = threading.Lock()
        self._ready = False

    # -- reading ----------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = self.ledger.store.read_connection()
        if not self._ready:
            if not schema_ready(conn):
                with closing(open_writer(self.path)):
                    pass
            self._ready = True
        return conn

    def state(self) -> IndexState:
        conn = self._reader()
        return IndexState(read_state(conn, _STATE_TEXT), self.ledger.size())

    def watermark(self) -> int:
        return read_state(self._reader(), _STATE_TEXT)

    def erasures_pending(self) -> bool:
        """Whether erasures were recorded since the last sweep (two indexed look-ups)."""
        conn = self._reader()
        since = read_state(conn, _STATE_ERASURE)
        for table in ("ledger_payload_erasures", "subject_keys"):
            row = conn.execute(
                f"SELECT 1 FROM {table} WHERE erasure_seq >= ? LIMIT 1", (since,)
            ).fetchone()
            if row is not None:
                return True
        return False

    def compact_pending(self) -> bool:
        return bool(read_state(self._reader(), _STATE_COMPACT))

    def text_query(self, q: str) -> str:
        """The query as an FTS5 expression."""
        return to_fts_query(q)

    def snippets(self, q: str, seqs: Sequence[int]) -> dict[int, Match]:
        return snippets(self._reader(), q, seqs)

    def indexed_text(self, seqs: Iterable[int]) -> set[int]:
        """Which of these entries have text in the index."""
        conn = self._reader()
        return {
            seq
            for seq in set(seqs)
            if conn.execute("SELECT 1 FROM audit_text WHERE rowid = ?", (seq,)).fetchone()
        }

    # -- following the ledger ---------------------------------------------------------------

    def catch_up(self, *, max_entries: int | None = None, budget_s: float | None = None) -> int:
        """Index entries past the watermark (at most ``max_entries`` / ``budget_s``), then
        sweep erasures. Returns how many entries were indexed."""
        deadline = time.monotonic() + budget_s if budget_s is not None else None
        done = 0
        with self._lock, closing(open_writer(self.path)) as conn:
            self._ready = True
            size = self.ledger.size()
            nxt = read_state(conn, _STATE_TEXT)
            while nxt < size:
                if max_entries is not None and done >= max_entries:
                    break
                if deadline is not None and done and time.monotonic() >= deadline:
                    break
                step = BATCH if max_entries is None else min(BATCH, max_entries - done)
                end = min(size, nxt + step)
                done += end - nxt
                nxt = self._index_range(conn, nxt, end)
            self._sweep(conn)
        return done

    def _index_range(self, conn: sqlite3.Connection, start: int, end: int) -> int:
        reader = self._reader()
        rows = reader.execute(
            "SELECT seq, action, body FROM ledger_entries WHERE seq >= ? AND seq < ? ORDER BY seq",
            (start, end),
        ).fetchall()
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
        texts: list[tuple[int, str]] = []
        if candidates:
            present = _present_payloads(reader, [seq for seq, _ in candidates])
            for seq, action in candidates:
                if seq not in present:
                    continue
                try:
                    record = self.ledger.read(seq)
                except ChatLedgerError:
                    log.warning("audit index: cannot read payload of entry %d", seq)
                    continue
                if record.payload_status != "present" or record.payload is None:
                    continue
                value = record.payload.get(TEXT_FIELDS[action])
                if isinstance(value, str) and value.strip():
                    texts.append((seq, clean_text(value)))
        with immediate(conn):
            current = read_state(conn, _STATE_TEXT)
            if current != start:  # another process indexed this range meanwhile
                return max(current, start)
            conn.executemany(
                "INSERT OR REPLACE INTO audit_facets (seq, role, severity) VALUES (?, ?, ?)",
                facets,
            )
            conn.executemany("INSERT OR REPLACE INTO audit_text (rowid, body) VALUES (?, ?)", texts)
            _write_state(conn, _STATE_TEXT, end)
        return end

    # -- erasure ----------------------------------------------------------------------------

    def sweep(self) -> int:
        """Delete from the text index everything erased since the last sweep."""
        with self._lock, closing(open_writer(self.path)) as conn:
            return self._sweep(conn)

    def _sweep(self, conn: sqlite3.Connection) -> int:
        reader = self._reader()
        since = read_state(conn, _STATE_ERASURE)
        # Read the size first: an erasure recorded with erasure_seq below it has committed
        # (its event entry is in the same transaction), so it is seen by the queries below.
        size = self.ledger.size()
        if since >= size:
            return 0
        seqs = {
            int(r[0])
            for r in reader.execute(
                "SELECT seq FROM ledger_payload_erasures WHERE erasure_seq >= ?", (since,)
            ).fetchall()
        }
        refs = [
            str(r[0])
            for r in reader.execute(
                "SELECT DISTINCT subject_ref FROM subject_keys WHERE erasure_seq >= ?", (since,)
            ).fetchall()
        ]
        for ref in refs:
            seqs.update(
                int(r[0])
                for r in reader.execute(
                    "SELECT seq FROM ledger_entries WHERE subject = ?", (ref,)
                ).fetchall()
            )
        return self._delete(conn, sorted(seqs), erasure_next=size)

    def forget(self, seqs: Iterable[int]) -> int:
        """Delete these entries' text now (search found their payload no longer readable)."""
        with self._lock, closing(open_writer(self.path)) as conn:
            return self._delete(conn, sorted(set(seqs)), erasure_next=None)

    def _delete(self, conn: sqlite3.Connection, seqs: list[int], erasure_next: int | None) -> int:
        deleted = 0
        for i in range(0, max(len(seqs), 1), 500):
            chunk = seqs[i : i + 500]
            with immediate(conn):
                if chunk:
                    marks = ",".join("?" * len(chunk))
                    present = conn.execute(
                        f"SELECT rowid FROM audit_text WHERE rowid IN ({marks})", chunk
                    ).fetchall()
                    if present:
                        conn.executemany(
                            "DELETE FROM audit_text WHERE rowid = ?", [(r[0],) for r in present]
                        )
                        deleted += len(present)
                        _write_state(conn, _STATE_COMPACT, 1)
                if erasure_next is not None and i + 500 >= len(seqs):
                    _write_state(conn, _STATE_ERASURE, erasure_next)
        if deleted:
            log.info("audit index: removed the text of %d erased entries", deleted)
        return deleted

    def compact(self, *, max_steps: int | None = None) -> bool:
        """After deletions, merge the FTS5 segments step by step (short transactions) until
        the deleted entries' tokens are gone from the index data. Returns True when done."""
        with self._lock, closing(open_writer(self.path)) as conn:
            if not read_state(conn, _STATE_COMPACT):
                return True
            steps = 0
            while max_steps is None or steps < max_steps:
                with immediate(conn):
                    before = conn.total_changes
                    conn.execute("INSERT INTO audit_text (audit_text, rank) VALUES ('merge', -64)")
                    worked = conn.total_changes - before >= 2
                    if not worked:
                        _write_state(conn, _STATE_COMPACT, 0)
                steps += 1
                if not worked:
                    # Fold the WAL so the old pages are overwritten in the main file too.
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    return True
            return False


def _present_payloads(conn: sqlite3.Connection, seqs: Sequence[int]) -> set[int]:
    """The seqs among ``seqs`` whose payload is stored and whose subject key is live."""
    found: set[int] = set()
    for i in range(0, len(seqs), 500):
        chunk = list(seqs[i : i + 500])
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT p.seq FROM ledger_payloads p JOIN subject_keys k ON k.key_ref = p.key_ref "
            f"WHERE p.seq IN ({marks}) AND k.wrapped IS NOT NULL",
            chunk,
        ).fetchall()
        found.update(int(r[0]) for r in rows)
    return found


_INDEXES: weakref.WeakKeyDictionary[Ledger, TextIndex] = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def index_supported(ledger: Ledger) -> bool:
    """Whether the ledger's store has an audit index (SQLite and PostgreSQL do)."""
    return getattr(ledger.store, "dialect", "") in ("sqlite", "postgresql")


def index_for(ledger: Ledger) -> TextIndex:
    """The audit index of this ledger (one per ledger object, so that callers share a lock):
    FTS5 tables on SQLite, tsvector and GIN on PostgreSQL."""
    with _INDEXES_LOCK:
        index = _INDEXES.get(ledger)
        if index is None:
            index = _open_index(ledger)
            _INDEXES[ledger] = index
        return index


def _open_index(ledger: Ledger) -> TextIndex:
    if getattr(ledger.store, "dialect", "") == "postgresql":
        from chatledger.audit.pg_textindex import PgAuditIndex

        return PgAuditIndex(ledger)
    return AuditIndex(ledger)
