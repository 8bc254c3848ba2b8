"""PostgreSQL full-text implementation of :class:`~chatledger.rag.retrieval.RetrievalIndex`.

Storage (migration 3 of :mod:`chatledger.store.postgres_schema`, see :data:`SCHEMA`): one
row per chunk in ``retrieval_chunks`` with a stored generated ``tsvector`` column, ``tsv``,
built with the ``english`` configuration (Snowball stemmer, English stop words dropped):
the chunk text with weight ``A`` and its heading with weight ``B``. A GIN index on ``tsv``
finds the candidates; the chatbot is filtered in the same statement.

Ranking: our own BM25, not ``ts_rank_cd``. ``ts_rank``/``ts_rank_cd`` know nothing of how
rare a word is (no idf), so their values are not comparable across queries, and no
normalisation option makes them so. We compute exactly the formula SQLite FTS5's
``bm25()`` uses (k1 = 1.2, b = 0.75, see :mod:`chatledger.rag.bm25`), from tsvector
statistics:

* ``f(q, D)``: the positions of the lexeme in ``tsv``, those in the text counting 1.0 and
  those in the heading 0.5 (the column weights of the SQLite index);
* ``|D|``: the chunk's token count (positions in ``tsv``, stored in ``n_tokens`` when the
  chunk is indexed), ``avgdl`` its mean;
* ``N`` and ``n(q)``: counted over the *chatbot's* chunks (FTS5 counts over the whole
  index): one tenant's documents never move another tenant's scores.

The score is then normalised by :func:`chatledger.rag.bm25.normalised` against the sum of
the idf of every query word, as on SQLite, so thresholds (``min_score``) mean the same on
both backends. Differences that remain: PostgreSQL's stemmer and stop-word list are not
FTS5's porter/unicode61 (a query made only of English stop words, "The Who", finds nothing
here: those words are not in the index at all), and tsvector keeps at most 256 positions
per lexeme.

Queries: the user's text never reaches the tsquery parser. It is reduced to plain words by
:func:`chatledger.rag.fts_query.query_terms` (letters and digits only: no quotes,
operators, backslashes or NUL bytes survive), PostgreSQL turns each word into its
lexemes with ``to_tsvector('english', word)``, and the ``OR`` query is assembled from those
lexemes, each quoted as a tsquery literal.

Cost: every matching chunk gets a cheap idf-weighted coverage score (which query lexemes it
holds); the best ``max(POOL, 10 * top_k)`` of those are scored with the full BM25. While a
chatbot's matches fit in the pool (any small index) the ranking is exact BM25.

Every method takes the caller's connection and never commits. ``search`` also accepts a
``psycopg_pool.ConnectionPool`` (or anything with a ``connection()`` context manager), or a
context manager yielding a connection, in case a caller hands one over.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg

from chatledger.errors import Conflict, InvalidInput, StorageError
from chatledger.rag import bm25
from chatledger.rag.fts_query import query_terms
from chatledger.rag.retrieval import MAX_TOP_K, Hit, IndexableChunk

__all__ = ["POOL", "SCHEMA", "PostgresIndex", "tsquery_literal"]

Conn = psycopg.Connection[Any]

POOL = 200
"""Candidates re-scored with the full BM25 (at least; ``10 * top_k`` when larger)."""

K1 = 1.2
B = 0.75
TEXT_WEIGHT = 1.0
HEADING_WEIGHT = 0.5

# Idempotent, so create_schema() may run it on a database migrated already.
SCHEMA = """
CREATE TABLE IF NOT EXISTS retrieval_chunks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chunk_id text NOT NULL UNIQUE,
    chatbot_id text NOT NULL,
    document_id text NOT NULL,
    document_version bigint NOT NULL,
    heading text NOT NULL,
    page bigint,
    sha256 text NOT NULL,
    text text NOT NULL,
    n_tokens integer NOT NULL DEFAULT 0,
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, text), 'A')
        || setweight(to_tsvector('english'::regconfig, heading), 'B')
    ) STORED
);
CREATE INDEX IF NOT EXISTS retrieval_chunks_document ON retrieval_chunks (document_id);
CREATE INDEX IF NOT EXISTS retrieval_chunks_chatbot ON retrieval_chunks (chatbot_id)
    INCLUDE (n_tokens);
CREATE INDEX IF NOT EXISTS retrieval_chunks_tsv ON retrieval_chunks USING gin (tsv);
"""

_INSERT = """
INSERT INTO retrieval_chunks (chunk_id, chatbot_id, document_id, document_version, heading,
                              page, sha256, text, n_tokens)
SELECT t.chunk_id, %s, %s, %s, t.heading, t.page, t.sha256, t.text,
       (SELECT coalesce(sum(cardinality(u.positions)), 0)
          FROM unnest(to_tsvector('english'::regconfig, t.text)
                      || to_tsvector('english'::regconfig, t.heading)) AS u)
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[])
     WITH ORDINALITY AS t(chunk_id, heading, page, sha256, text, ord)
ORDER BY t.ord
ON CONFLICT (chunk_id) DO NOTHING
"""

# Query words to lexemes, in query order (a word may give none: an English stop word).
_LEXEMES = """
SELECT u.lexeme
FROM unnest(%s::text[]) WITH ORDINALITY AS t(word, ord),
     LATERAL unnest(to_tsvector('english'::regconfig, t.word)) AS u
ORDER BY t.ord, u.lexeme
"""

# N, avgdl and n(q) of every lexeme, over the chatbot's chunks.
_STATS = """
SELECT (SELECT count(*) FROM retrieval_chunks WHERE chatbot_id = %(bot)s),
       (SELECT coalesce(avg(n_tokens), 0)::float8 FROM retrieval_chunks
         WHERE chatbot_id = %(bot)s),
       array(SELECT (SELECT count(*) FROM retrieval_chunks c
                      WHERE c.chatbot_id = %(bot)s AND c.tsv @@ q.query)
               FROM unnest(%(queries)s::tsquery[]) WITH ORDINALITY AS q(query, ord)
              ORDER BY q.ord)
"""

# Candidates: matching chunks of the chatbot, pre-ranked by the idf of the lexemes they hold;
# the best of them get the full BM25 (term frequencies from the tsvector's positions).
_SEARCH = f"""
WITH q AS (
    SELECT * FROM unnest(%(lexemes)s::text[], %(queries)s::tsquery[], %(idf)s::float8[])
        AS q(lexeme, query, idf)
),
pool AS (
    SELECT c.id, c.n_tokens, c.tsv
    FROM retrieval_chunks c
    WHERE c.chatbot_id = %(bot)s AND c.tsv @@ %(any)s::tsquery
    ORDER BY (SELECT sum(q.idf) FROM q WHERE c.tsv @@ q.query) DESC, c.id
    LIMIT %(pool)s
),
scored AS (
    SELECT p.id,
           sum(q.idf * f.tf * {K1 + 1}
               / (f.tf + {K1} * (1 - {B} + {B} * p.n_tokens / %(avgdl)s::float8))) AS s
    FROM pool p
    CROSS JOIN LATERAL unnest(p.tsv) AS u
    JOIN q ON q.lexeme = u.lexeme
    CROSS JOIN LATERAL (
        SELECT sum(CASE w WHEN 'A' THEN {TEXT_WEIGHT} ELSE {HEADING_WEIGHT} END)::float8 AS tf
        FROM unnest(u.weights) AS w
    ) AS f
    GROUP BY p.id
)
SELECT c.chunk_id, c.document_id, c.document_version, c.text, c.heading, c.page, c.sha256,
       s.s
FROM scored s JOIN retrieval_chunks c ON c.id = s.id
ORDER BY s.s DESC, c.id
LIMIT %(top_k)s
"""

_HIT_COLUMNS = "chunk_id, document_id, document_version, text, heading, page, sha256"


def tsquery_literal(lexeme: str) -> str:
    """A tsquery operand matching exactly ``lexeme``: quoted, so no character of it is
    syntax (quotes doubled, backslashes escaped)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _require(value: object, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{name} must be a non-empty string", details={"field": name})


def _no_nul(value: str, name: str) -> str:
    if "\x00" in value:
        raise InvalidInput(f"{name} must not contain NUL characters", details={"field": name})
    return value


def _hit(row: Sequence[Any], score: float, raw_bm25: float) -> Hit:
    chunk_id, document_id, version, text, heading, page, sha256 = row[:7]
    return Hit(
        chunk_id,
        document_id,
        int(version),
        text,
        heading,
        None if page is None else int(page),
        sha256,
        score,
        raw_bm25,
    )


@contextmanager
def _borrowed(source: Any) -> Iterator[Conn]:
    """A connection from what the caller passed: a connection (used as is, never closed),
    a pool (``.connection()``), or a context manager yielding a connection."""
    if isinstance(source, psycopg.Connection):
        yield source
    elif callable(getattr(source, "connection", None)):
        with source.connection() as conn:
            yield conn
    elif isinstance(source, AbstractContextManager):
        with source as conn:
            yield conn
    else:
        raise TypeError(f"not a PostgreSQL connection: {type(source).__name__}")


class PostgresIndex:
    """BM25 retrieval on PostgreSQL full-text search. Stateless: one instance serves every
    connection."""

    def create_schema(self, conn: Conn) -> None:
        """Create the table and indexes if missing (migration 3 runs this). A no-op once the
        table exists: ``CREATE INDEX IF NOT EXISTS`` would still demand the owner's rights."""
        row = conn.execute("SELECT to_regclass('retrieval_chunks') IS NOT NULL").fetchone()
        if row is None or not row[0]:
            conn.execute(SCHEMA.encode())

    def add_chunks(
        self,
        conn: Conn,
        chatbot_id: str,
        document_id: str,
        document_version: int,
        chunks: Iterable[IndexableChunk],
    ) -> int:
        _require(chatbot_id, "chatbot_id")
        _require(document_id, "document_id")
        if isinstance(document_version, bool) or not isinstance(document_version, int):
            raise InvalidInput("document_version must be an integer")
        _no_nul(chatbot_id, "chatbot_id")
        _no_nul(document_id, "document_id")
        ids: list[str] = []
        headings: list[str] = []
        pages: list[int | None] = []
        hashes: list[str] = []
        texts: list[str] = []
        for chunk in chunks:
            _require(chunk.chunk_id, "chunk_id")
            if not isinstance(chunk.text, str) or not isinstance(chunk.sha256, str):
                raise InvalidInput("chunk text and sha256 must be strings")
            if chunk.page is not None and (
                isinstance(chunk.page, bool) or not isinstance(chunk.page, int)
            ):
                raise InvalidInput("page must be an integer or None")
            ids.append(_no_nul(chunk.chunk_id, "chunk_id"))
            headings.append(_no_nul(chunk.heading or "", "heading"))
            pages.append(chunk.page)
            hashes.append(_no_nul(chunk.sha256, "sha256"))
            texts.append(_no_nul(chunk.text, "text"))
        # A document has one current version in retrieval: indexing v2 retires v1 at once.
        conn.execute(
            "DELETE FROM retrieval_chunks WHERE document_id = %s AND document_version <> %s",
            (document_id, document_version),
        )
        if not ids:
            return 0
        # ON CONFLICT DO NOTHING rather than catching the unique violation: an error would
        # abort the caller's whole transaction, which is the ledger's.
        cur = conn.execute(
            _INSERT,
            (chatbot_id, document_id, document_version, ids, headings, pages, hashes, texts),
        )
        if cur.rowcount != len(ids):
            raise Conflict(
                "a chunk with this id is already indexed",
                details={"document_id": document_id, "document_version": document_version},
            )
        return len(ids)

    def remove_document(self, conn: Conn, document_id: str) -> int:
        cur = conn.execute("DELETE FROM retrieval_chunks WHERE document_id = %s", (document_id,))
        return cur.rowcount

    def remove_chatbot(self, conn: Conn, chatbot_id: str) -> int:
        cur = conn.execute("DELETE FROM retrieval_chunks WHERE chatbot_id = %s", (chatbot_id,))
        return cur.rowcount

    def search(
        self,
        conn: Any,
        chatbot_id: str,
        query: str,
        top_k: int = 5,
        min_score: float = 0.0,
    ) -> list[Hit]:
        """Best chunks first; ``score`` in 0..1 (see the module docstring). Any text is a
        valid query: it is reduced to words, never parsed as tsquery syntax."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be an integer between 1 and {MAX_TOP_K}")
        if not 0.0 <= min_score <= 1.0:
            raise InvalidInput("min_score must be between 0 and 1")
        terms = query_terms(query) if isinstance(query, str) else []
        if not terms or not isinstance(chatbot_id, str) or "\x00" in chatbot_id:
            return []
        try:
            with _borrowed(conn) as c:
                hits = self._search(c, chatbot_id, terms, top_k)
        except psycopg.Error as exc:
            raise StorageError(f"retrieval failed: {exc}") from exc
        return [h for h in hits if h.score >= min_score]

    def _search(self, conn: Conn, chatbot_id: str, terms: list[str], top_k: int) -> list[Hit]:
        lexemes: list[str] = []
        for (lexeme,) in conn.execute(_LEXEMES, (terms,)).fetchall():
            if lexeme not in lexemes:
                lexemes.append(lexeme)
        if not lexemes:
            return []
        queries = [tsquery_literal(lx) for lx in lexemes]
        row = conn.execute(_STATS, {"bot": chatbot_id, "queries": queries}).fetchone()
        assert row is not None
        n_rows, avgdl, counts = int(row[0]), float(row[1]), [int(n) for n in row[2]]
        if not any(counts):
            return []
        idf = [bm25.idf(n_rows, n) for n in counts]
        reference = bm25.reference_score(idf)
        present = [i for i, n in enumerate(counts) if n > 0]
        rows = conn.execute(
            _SEARCH,
            {
                "lexemes": [lexemes[i] for i in present],
                "queries": [queries[i] for i in present],
                "idf": [idf[i] for i in present],
                "bot": chatbot_id,
                "any": " | ".join(queries[i] for i in present),
                "pool": max(POOL, 10 * top_k),
                "avgdl": avgdl if avgdl > 0 else 1.0,
                "top_k": top_k,
            },
        ).fetchall()
        hits = []
        for r in rows:
            raw = -float(r[7])  # FTS5's sign: negative, lower is better
            hits.append(_hit(r, bm25.normalised(raw, reference), raw))
        return hits

    def get_chunks(self, conn: Any, chatbot_id: str, chunk_ids: Sequence[str]) -> list[Hit]:
        """The named chunks of this chatbot, in the order asked, with ``score=0``."""
        wanted = [c for c in chunk_ids if isinstance(c, str) and "\x00" not in c]
        if not wanted or not isinstance(chatbot_id, str) or "\x00" in chatbot_id:
            return []
        with _borrowed(conn) as c:
            rows = c.execute(
                f"SELECT {_HIT_COLUMNS} FROM retrieval_chunks"
                " WHERE chatbot_id = %s AND chunk_id = ANY(%s::text[])",
                (chatbot_id, wanted),
            ).fetchall()
        by_id = {row[0]: _hit(row, 0.0, 0.0) for row in rows}
        return [by_id[cid] for cid in chunk_ids if cid in by_id]
