"""SQLite FTS5 implementation of :class:`~chatledger.rag.retrieval.RetrievalIndex`.

BM25 over ``porter unicode61`` (stemmed, case- and diacritic-insensitive); the ranked query
itself lives in :mod:`chatledger.rag.sqlite_search`, the score normalisation in
:mod:`chatledger.rag.bm25`. The types are re-exported here for convenience.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from chatledger.errors import Conflict, InvalidInput
from chatledger.rag import sqlite_search
from chatledger.rag.retrieval import MAX_TOP_K, Hit, IndexableChunk, IndexChunk, RetrievalIndex

__all__ = ["MAX_TOP_K", "Hit", "IndexChunk", "IndexableChunk", "RetrievalIndex", "SqliteIndex"]

# Table names are prefixed so they cannot collide with the document store's own tables.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS retrieval_chunks (
        id INTEGER PRIMARY KEY,
        chunk_id TEXT NOT NULL UNIQUE,
        chatbot_id TEXT NOT NULL,
        document_id TEXT NOT NULL,
        document_version INTEGER NOT NULL,
        heading TEXT NOT NULL,
        page INTEGER,
        sha256 TEXT NOT NULL,
        text TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS retrieval_chunks_document ON retrieval_chunks(document_id)",
    "CREATE INDEX IF NOT EXISTS retrieval_chunks_chatbot ON retrieval_chunks(chatbot_id)",
    # External-content FTS5 table: the text is stored once, in retrieval_chunks. The chatbot
    # is filtered in the join rather than in FTS5: column filters make FTS5 read position
    # lists for every candidate, which measured slower than scoring and discarding.
    """CREATE VIRTUAL TABLE IF NOT EXISTS retrieval_chunks_fts USING fts5(
        text, heading,
        content='retrieval_chunks', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )""",
    # Triggers keep the FTS table in step with any write to retrieval_chunks, including
    # deletes made by code other than this class.
    """CREATE TRIGGER IF NOT EXISTS retrieval_chunks_ai AFTER INSERT ON retrieval_chunks BEGIN
        INSERT INTO retrieval_chunks_fts(rowid, text, heading)
        VALUES (new.id, new.text, new.heading);
    END""",
    """CREATE TRIGGER IF NOT EXISTS retrieval_chunks_ad AFTER DELETE ON retrieval_chunks BEGIN
        INSERT INTO retrieval_chunks_fts(retrieval_chunks_fts, rowid, text, heading)
        VALUES ('delete', old.id, old.text, old.heading);
    END""",
    """CREATE TRIGGER IF NOT EXISTS retrieval_chunks_au AFTER UPDATE ON retrieval_chunks BEGIN
        INSERT INTO retrieval_chunks_fts(retrieval_chunks_fts, rowid, text, heading)
        VALUES ('delete', old.id, old.text, old.heading);
        INSERT INTO retrieval_chunks_fts(rowid, text, heading)
        VALUES (new.id, new.text, new.heading);
    END""",
)

_HIT_COLUMNS = "c.chunk_id, c.document_id, c.document_version, c.text, c.heading, c.page, c.sha256"


def _hit(row: Sequence[Any], score: float, raw_bm25: float) -> Hit:
    chunk_id, document_id, version, text, heading, page, sha256 = row[:7]
    return Hit(chunk_id, document_id, version, text, heading, page, sha256, score, raw_bm25)


def _require(value: object, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{name} must be a non-empty string", details={"field": name})


class SqliteIndex:
    """BM25 retrieval on SQLite FTS5. Stateless: one instance can serve every connection."""

    def create_schema(self, conn: sqlite3.Connection) -> None:
        # One statement at a time: executescript() would COMMIT the caller's transaction.
        for statement in _SCHEMA:
            conn.execute(statement)

    def add_chunks(
        self,
        conn: sqlite3.Connection,
        chatbot_id: str,
        document_id: str,
        document_version: int,
        chunks: Iterable[IndexableChunk],
    ) -> int:
        _require(chatbot_id, "chatbot_id")
        _require(document_id, "document_id")
        if isinstance(document_version, bool) or not isinstance(document_version, int):
            raise InvalidInput("document_version must be an integer")
        rows: list[tuple[object, ...]] = []
        for chunk in chunks:
            _require(chunk.chunk_id, "chunk_id")
            if not isinstance(chunk.text, str) or not isinstance(chunk.sha256, str):
                raise InvalidInput("chunk text and sha256 must be strings")
            if chunk.page is not None and not isinstance(chunk.page, int):
                raise InvalidInput("page must be an integer or None")
            rows.append(
                (
                    chunk.chunk_id,
                    chatbot_id,
                    document_id,
                    document_version,
                    chunk.heading or "",
                    chunk.page,
                    chunk.sha256,
                    chunk.text,
                )
            )
        # A document has one current version in retrieval: indexing v2 retires v1 at once.
        conn.execute(
            "DELETE FROM retrieval_chunks WHERE document_id = ? AND document_version != ?",
            (document_id, document_version),
        )
        try:
            conn.executemany(
                "INSERT INTO retrieval_chunks (chunk_id, chatbot_id, document_id,"
                " document_version, heading, page, sha256, text)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(
                "a chunk with this id is already indexed",
                details={"document_id": document_id, "document_version": document_version},
            ) from exc
        return len(rows)

    def remove_document(self, conn: sqlite3.Connection, document_id: str) -> int:
        cur = conn.execute("DELETE FROM retrieval_chunks WHERE document_id = ?", (document_id,))
        return cur.rowcount

    def remove_chatbot(self, conn: sqlite3.Connection, chatbot_id: str) -> int:
        cur = conn.execute("DELETE FROM retrieval_chunks WHERE chatbot_id = ?", (chatbot_id,))
        return cur.rowcount

    def search(
        self,
        conn: sqlite3.Connection,
        chatbot_id: str,
        query: str,
        top_k: int = 5,
        min_score: float = 0.0,
    ) -> list[Hit]:
        """Best chunks first; ``score`` in 0..1 (see :mod:`chatledger.rag.bm25`). Any text is
        a valid query: it is reduced to quoted words, never passed to FTS5 as syntax."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be an integer between 1 and {MAX_TOP_K}")
        if not 0.0 <= min_score <= 1.0:
            raise InvalidInput("min_score must be between 0 and 1")
        hits = sqlite_search.search(conn, chatbot_id, query, top_k)
        return [h for h in hits if h.score >= min_score]

    def get_chunks(
        self, conn: sqlite3.Connection, chatbot_id: str, chunk_ids: Sequence[str]
    ) -> list[Hit]:
        if not chunk_ids:
            return []
        marks = ",".join("?" * len(chunk_ids))
        rows = conn.execute(
            f"SELECT {_HIT_COLUMNS} FROM retrieval_chunks AS c"
            f" WHERE c.chatbot_id = ? AND c.chunk_id IN ({marks})",
            (chatbot_id, *chunk_ids),
        ).fetchall()
        by_id = {row[0]: _hit(row, 0.0, 0.0) for row in rows}
        return [by_id[cid] for cid in chunk_ids if cid in by_id]
