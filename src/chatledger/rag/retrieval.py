"""The retrieval contract: what goes into an index, what comes out, and the protocol every
index implements (SQLite FTS5 now, PostgreSQL tsvector later).

Every method takes the caller's connection and never commits: index writes happen inside the
caller's transaction, so a chunk is searchable exactly when the document change and its
audit event are committed together, and vanishes with them on rollback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

MAX_TOP_K = 100

ConnT_contra = TypeVar("ConnT_contra", contravariant=True)


class IndexableChunk(Protocol):
    """What the index needs from a chunk (any object with these attributes will do)."""

    @property
    def chunk_id(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def heading(self) -> str: ...
    @property
    def page(self) -> int | None: ...
    @property
    def sha256(self) -> str: ...


@dataclass(frozen=True, slots=True)
class IndexChunk:
    """A plain chunk value, for callers that have no chunk type of their own."""

    chunk_id: str
    text: str
    heading: str = ""
    page: int | None = None
    sha256: str = ""


def make_chunk_id(document_id: str, document_version: int, index: int) -> str:
    """A chunk id unique across the index (chunk ids are unique index-wide)."""
    return f"{document_id}:v{document_version}:{index}"


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved chunk.

    ``score`` is 0..1 and comparable across queries (see :mod:`chatledger.rag.bm25`).
    ``raw_bm25`` is the score before normalisation, in bm25 units with FTS5's sign
    (negative, lower is better): exactly FTS5's ``bm25()`` unless the query has common
    words (see :mod:`chatledger.rag.sqlite_search`). Hits not found by BM25 (vector search,
    ``get_chunks``) have ``raw_bm25=0``; ``similarity`` is the cosine similarity when hybrid
    retrieval computed one.
    """

    chunk_id: str
    document_id: str
    document_version: int
    text: str
    heading: str
    page: int | None
    sha256: str
    score: float
    raw_bm25: float
    similarity: float | None = None


class RetrievalIndex(Protocol[ConnT_contra]):
    def create_schema(self, conn: ConnT_contra) -> None: ...

    def add_chunks(
        self,
        conn: ConnT_contra,
        chatbot_id: str,
        document_id: str,
        document_version: int,
        chunks: Iterable[IndexableChunk],
    ) -> int:
        """Index a document version's chunks; other versions of it leave the index."""
        ...

    def remove_document(self, conn: ConnT_contra, document_id: str) -> int: ...

    def remove_chatbot(self, conn: ConnT_contra, chatbot_id: str) -> int: ...

    def search(
        self,
        conn: ConnT_contra,
        chatbot_id: str,
        query: str,
        top_k: int = 5,
        min_score: float = 0.0,
    ) -> list[Hit]: ...

    def get_chunks(
        self, conn: ConnT_contra, chatbot_id: str, chunk_ids: Sequence[str]
    ) -> list[Hit]:
        """The named chunks of this chatbot, in the order asked, with ``score=0``."""
        ...
