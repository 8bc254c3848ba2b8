"""Hybrid retrieval: reciprocal rank fusion and the vector store, with a real (if tiny)
embedder of our own: hashed bags of character trigrams, so that it also matches words
that BM25's exact terms miss (the misspelt "refnds" ~ "refunds")."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence

import pytest

from chatledger.rag.embeddings import (
    Embedder,
    HybridRetriever,
    SqliteVectorStore,
    load_default_embedder,
    normalise_vector,
    reciprocal_rank_fusion,
)
from chatledger.rag.index import IndexChunk, RetrievalIndex, SqliteIndex
from chatledger.rag.tokens import words

pytestmark = pytest.mark.sqlite_only(
    reason="HybridRetriever is built on SQLite (SqliteIndex, SqliteVectorStore) only"
)

BOT = "bot-1"


class TrigramEmbedder:
    """Feature hashing of character trigrams of each word into a fixed-size vector."""

    name = "test-trigram-hash-64"
    dimensions = 64

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            vector = [0.0] * self.dimensions
            for word in words(text):
                padded = f"#{word}#"
                for i in range(len(padded) - 2):
                    digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=2).digest()
                    vector[int.from_bytes(digest, "big") % self.dimensions] += 1.0
            vectors.append(normalise_vector(vector))
        return vectors


def test_rrf_fuses_by_rank() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]], k=60)
    ids = [i for i, _ in fused]
    assert ids == ["b", "c", "a", "d"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert dict(fused)["d"] == pytest.approx(1 / 63)


def test_rrf_is_deterministic_on_ties_and_ignores_repeats() -> None:
    assert [i for i, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]
    assert reciprocal_rank_fusion([["a", "a", "b"]]) == reciprocal_rank_fusion([["a", "b"]])
    assert reciprocal_rank_fusion([]) == []


def test_embedder_protocol() -> None:
    assert isinstance(TrigramEmbedder(), Embedder)


def test_no_packaged_model_means_no_embedder() -> None:
    # Neither sentence-transformers nor a packaged model is installed in the test env.
    assert load_default_embedder() is None


@pytest.fixture
def hybrid(conn: sqlite3.Connection) -> HybridRetriever:
    retriever = HybridRetriever(SqliteIndex(), SqliteVectorStore(), TrigramEmbedder())
    retriever.create_schema(conn)
    retriever.add_chunks(
        conn,
        BOT,
        "policy",
        1,
        [
            IndexChunk("p0", "Refunds are paid within 14 days.", "Refunds"),
            IndexChunk("p1", "Shipping is free above 50 euros.", "Shipping"),
            IndexChunk("p2", "Vouchers are not refundable.", "Vouchers"),
        ],
    )
    return retriever


def test_hybrid_finds_what_bm25_misses(conn: sqlite3.Connection, hybrid: HybridRetriever) -> None:
    assert SqliteIndex().search(conn, BOT, "refnds shipping", 5)[0].chunk_id == "p1"
    hits = hybrid.search(conn, BOT, "refnds shipping", 3)
    by_id = {h.chunk_id: h for h in hits}
    assert {"p0", "p1"} <= set(by_id)  # p0 found through trigram similarity only
    assert by_id["p0"].raw_bm25 == 0.0
    assert by_id["p0"].similarity is not None
    assert by_id["p0"].score == by_id["p0"].similarity > 0
    assert by_id["p1"].raw_bm25 < 0  # BM25 evidence kept for the record
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert hybrid.search(conn, BOT, "refnds", 1)[0].chunk_id == "p0"


def test_hybrid_min_score_and_empty_query(
    conn: sqlite3.Connection, hybrid: HybridRetriever
) -> None:
    assert hybrid.search(conn, BOT, "   ", 3) == []
    assert hybrid.search(conn, BOT, "refnds", 3, min_score=0.99) == []


def test_hybrid_is_a_retrieval_index(conn: sqlite3.Connection, hybrid: HybridRetriever) -> None:
    index: RetrievalIndex[sqlite3.Connection] = hybrid
    assert [h.chunk_id for h in index.get_chunks(conn, BOT, ["p2", "p0"])] == ["p2", "p0"]
    assert index.remove_chatbot(conn, BOT) == 3
    assert conn.execute("SELECT count(*) FROM retrieval_vectors").fetchone() == (0,)


def test_vectors_leave_with_their_chunks(conn: sqlite3.Connection, hybrid: HybridRetriever) -> None:
    hybrid.remove_document(conn, "policy")
    assert conn.execute("SELECT count(*) FROM retrieval_vectors").fetchone() == (0,)
    assert hybrid.search(conn, BOT, "refnds", 3) == []


def test_vector_search_orders_by_cosine(conn: sqlite3.Connection, hybrid: HybridRetriever) -> None:
    embedder = TrigramEmbedder()
    (query,) = embedder.embed(["free shipping"])
    found = SqliteVectorStore().search(conn, BOT, embedder.name, query, 3)
    assert found[0][0] == "p1"
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    assert SqliteVectorStore().search(conn, BOT, "other-model", query, 3) == []
