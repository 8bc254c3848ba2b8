"""PostgresIndex on a real server, as the application role: indexing, versions, deletion,
transactions, search quality and scores, hostile queries."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import ConnectionPool

from chatledger.errors import Conflict, InvalidInput
from chatledger.rag.bm25 import normalised
from chatledger.rag.pg_index import PostgresIndex, tsquery_literal
from chatledger.rag.retrieval import IndexChunk, RetrievalIndex
from chatledger.store.postgres import PostgresStore
from chatledger.store.postgres_schema import applied_versions
from tests.rag.conftest import corpus_chunks

BOT = "bot-1"
INDEX = PostgresIndex()
Conn = psycopg.Connection[Any]

# The corpus of tests/rag, so both backends are held to the same questions.


@pytest.fixture
def conn(pg_url: str) -> Iterator[Conn]:
    """The application role's connection, outside autocommit like the ledger's writer."""
    with psycopg.connect(pg_url, autocommit=False) as connection:
        yield connection


@pytest.fixture
def shop(conn: Conn) -> Conn:
    for doc, chunks in corpus_chunks().items():
        INDEX.add_chunks(conn, BOT, doc, 1, chunks)
    conn.commit()
    return conn


def top_ids(conn: Any, query: str, k: int = 3) -> list[str]:
    return [h.chunk_id for h in INDEX.search(conn, BOT, query, k)]


def test_migration_3_created_the_table_as_the_owner(conn: Conn) -> None:
    assert 3 in applied_versions(conn)
    row = conn.execute(
        "SELECT pg_get_userbyid(c.relowner) <> current_user FROM pg_class c "
        "WHERE c.relname = 'retrieval_chunks' AND c.relnamespace = current_schema()::regnamespace"
    ).fetchone()
    assert row == (True,)  # owned by the owner role; the app only has DML on it
    indexes = {
        r[0]
        for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'retrieval_chunks' "
            "AND schemaname = current_schema()"
        )
    }
    assert any("USING gin (tsv)" in d for d in indexes)
    INDEX.create_schema(conn)  # idempotent, and harmless for the app role once migrated


def test_the_protocol_is_implemented() -> None:
    index: RetrievalIndex[Conn] = INDEX
    assert index is INDEX


# One test per list, not one per case: every test pays for a fresh schema (~0.3 s).
RANKED = [
    ("How long do refunds take?", "returns-0"),
    ("How many days is the return window for unused items?", "returns-1"),
    ("how much is express shipping", "shipping-0"),
    ("Do you deliver internationally? who pays customs fees", "shipping-1"),
    ("is my espresso machine under warranty", "warranty-0"),
    ("I forgot my password", "accounts-0"),
    ("REFUNDED", "returns-0"),  # case and stemming
]


def test_search_ranks_the_answering_chunk_first(shop: Conn) -> None:
    assert [top_ids(shop, query)[0] for query, _ in RANKED] == [exp for _, exp in RANKED]


def test_hits_carry_provenance_and_bounded_ordered_scores(shop: Conn) -> None:
    hits = INDEX.search(shop, BOT, "shipping costs for express orders", top_k=5)
    first = hits[0]
    assert (first.document_id, first.document_version, first.heading, first.page) == (
        "shipping",
        1,
        "Shipping costs",
        None,
    )
    assert first.sha256 == "sha-shipping"
    assert first.text.startswith("Standard shipping is free")
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.raw_bm25 < 0 for h in hits)  # FTS5's sign: negative, lower is better


def test_scores_are_normalised_like_sqlite(shop: Conn) -> None:
    full = INDEX.search(shop, BOT, "express shipping", 1)[0]
    half = INDEX.search(shop, BOT, "express teleportation", 1)[0]
    assert full.chunk_id == half.chunk_id == "shipping-0"
    assert full.score > 0.6
    assert half.score < full.score
    # the reference is the idf of every query word over the chatbot's chunks, as on SQLite
    df = [
        shop.execute(
            "SELECT count(*) FROM retrieval_chunks WHERE chatbot_id = %s AND tsv @@ %s::tsquery",
            (BOT, lexeme),
        ).fetchone()
        for lexeme in ("express", "ship")
    ]
    assert df == [(1,), (2,)]  # "ship" in "Shipping costs" and "We ship to most countries"
    reference = math.log(5.5 / 1.5) + math.log(4.5 / 2.5)
    assert full.score == normalised(full.raw_bm25, reference)


def test_search_is_deterministic_and_top_k_min_score_apply(shop: Conn) -> None:
    first = INDEX.search(shop, BOT, "refund payment method items", 5)
    assert INDEX.search(shop, BOT, "refund payment method items", 5) == first
    everything = INDEX.search(shop, BOT, "days items orders", 10)
    assert len(everything) > 2
    assert len(INDEX.search(shop, BOT, "days items orders", 2)) == 2
    cut = everything[1].score
    kept = INDEX.search(shop, BOT, "days items orders", 10, min_score=cut)
    assert kept and all(h.score >= cut for h in kept)


def test_invalid_top_k_and_min_score_are_refused(shop: Conn) -> None:
    for top_k in (0, -1, 101, True):
        with pytest.raises(InvalidInput):
            INDEX.search(shop, BOT, "refund", top_k)
    with pytest.raises(InvalidInput):
        INDEX.search(shop, BOT, "refund", 3, min_score=1.5)


def test_unknown_words_stop_words_and_empty_queries_find_nothing(shop: Conn) -> None:
    assert INDEX.search(shop, BOT, "zeppelin aardvark", 3) == []
    assert INDEX.search(shop, BOT, "", 3) == []
    assert INDEX.search(shop, BOT, "?!  ...", 3) == []
    assert INDEX.search(shop, BOT, "The Who", 3) == []  # english stop words: not indexed


def test_chatbots_are_isolated(shop: Conn) -> None:
    assert INDEX.search(shop, "another-bot", "refund", 3) == []
    INDEX.add_chunks(shop, "another-bot", "other-doc", 1, [IndexChunk("x-0", "refund rules")])
    assert "x-0" not in top_ids(shop, "refund", 10)
    assert [h.chunk_id for h in INDEX.search(shop, "another-bot", "refund", 3)] == ["x-0"]
    assert INDEX.get_chunks(shop, BOT, ["x-0"]) == []


def test_writes_belong_to_the_callers_transaction(shop: Conn, pg_url: str) -> None:
    assert INDEX.remove_document(shop, "returns") == 2
    assert "returns-0" not in top_ids(shop, "refund", 10)  # seen inside the transaction
    with psycopg.connect(pg_url, autocommit=True) as other:
        assert top_ids(other, "refund")[0] == "returns-0"  # not committed: others still see it
    shop.rollback()
    assert top_ids(shop, "refund")[0] == "returns-0"
    assert INDEX.remove_document(shop, "returns") == 2
    shop.commit()
    with psycopg.connect(pg_url, autocommit=True) as other:
        assert "returns-0" not in top_ids(other, "refund", 10)
        assert INDEX.get_chunks(other, BOT, ["returns-0", "returns-1"]) == []


def test_remove_chatbot(shop: Conn) -> None:
    assert INDEX.remove_chatbot(shop, BOT) == 6
    assert INDEX.search(shop, BOT, "refund", 3) == []
    assert INDEX.remove_chatbot(shop, BOT) == 0


def test_a_new_version_retires_the_old_one(shop: Conn) -> None:
    v2 = [IndexChunk("returns-v2-0", "Refunds now take 5 days.", "Refunds", 3, "sha-v2")]
    assert INDEX.add_chunks(shop, BOT, "returns", 2, v2) == 1
    hits = INDEX.search(shop, BOT, "refund", 10)
    assert [
        (h.chunk_id, h.document_version, h.page) for h in hits if h.document_id == "returns"
    ] == [("returns-v2-0", 2, 3)]
    assert INDEX.get_chunks(shop, BOT, ["returns-0", "returns-v2-0"])[0].chunk_id == "returns-v2-0"
    # the same version again appends; an empty version retires everything else
    INDEX.add_chunks(
        shop, BOT, "returns", 2, [IndexChunk("returns-v2-1", "Gift cards: no refund.")]
    )
    assert {h.chunk_id for h in INDEX.search(shop, BOT, "refund", 10)} >= {
        "returns-v2-0",
        "returns-v2-1",
    }
    assert INDEX.add_chunks(shop, BOT, "returns", 3, []) == 0
    assert not [h for h in INDEX.search(shop, BOT, "refund", 10) if h.document_id == "returns"]


def test_duplicate_chunk_ids_conflict(shop: Conn) -> None:
    with pytest.raises(Conflict):
        INDEX.add_chunks(shop, BOT, "warranty", 1, [IndexChunk("warranty-0", "again")])
    # ON CONFLICT, not an error: the caller's transaction is still usable
    assert top_ids(shop, "warranty")[0] == "warranty-0"
    with pytest.raises(Conflict):
        INDEX.add_chunks(shop, BOT, "new", 1, [IndexChunk("n-0", "a"), IndexChunk("n-0", "b")])


@pytest.mark.parametrize(
    "chunk",
    [
        IndexChunk("", "text"),
        IndexChunk("c", "nul \x00 byte"),
        IndexChunk("c", "text", "heading", True),
    ],
)
def test_invalid_chunks_are_refused(conn: Conn, chunk: IndexChunk) -> None:
    with pytest.raises(InvalidInput):
        INDEX.add_chunks(conn, BOT, "doc", 1, [chunk])


def test_get_chunks_keeps_the_order_asked(shop: Conn) -> None:
    got = INDEX.get_chunks(shop, BOT, ["warranty-0", "missing", "returns-1", "a\x00b"])
    assert [h.chunk_id for h in got] == ["warranty-0", "returns-1"]
    assert all(h.score == 0.0 and h.raw_bm25 == 0.0 for h in got)
    assert INDEX.get_chunks(shop, BOT, []) == []


def test_search_accepts_a_pool_and_the_stores_read_connection(shop: Conn, pg_url: str) -> None:
    with ConnectionPool(pg_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        assert top_ids(pool, "refund")[0] == "returns-0"
    store = PostgresStore(pg_url, pool_size=1)
    try:
        assert top_ids(store.read_connection(), "password reset")[0] == "accounts-0"
    finally:
        store.close()


def test_ranking_holds_beyond_the_exact_pool(conn: Conn) -> None:
    """More matches than the BM25 pool: the pre-ranking must keep the rare word's chunk."""
    filler = [IndexChunk(f"f-{i}", f"Shipping note {i}: orders ship daily.") for i in range(400)]
    INDEX.add_chunks(conn, BOT, "filler", 1, filler)
    INDEX.add_chunks(conn, BOT, "rare", 1, [IndexChunk("r-0", "Shipping by zeppelin is slow.")])
    assert top_ids(conn, "zeppelin shipping", 1) == ["r-0"]
    assert len(INDEX.search(conn, BOT, "shipping", 100)) == 100


# --- hostile queries ----------------------------------------------------------------------

HOSTILE = [
    "'",
    "''",
    '"unbalanced',
    "((((",
    "))",
    "refund & shipping",
    "refund | | shipping",
    "!refund",
    "!!",
    "refund:*",
    "ref:* & !(ship | 'x')",
    "<->",
    "refund <2> shipping",
    "a:A",
    "\\",
    "refund\\",
    "\\'; DROP TABLE retrieval_chunks; --",
    "\x00",
    "refund\x00shipping",
    "%s %(x)s %%",
    "$$ $a$",
    "\ud7ff\ufffe\U0001f600 refund",
    "x" * 5000,
    " ".join(["refund"] * 500),
    "ｒｅｆｕｎｄ",
]


def test_hostile_queries_never_raise(shop: Conn) -> None:
    for query in HOSTILE:
        hits = INDEX.search(shop, BOT, query, 5)
        assert all(0.0 <= h.score <= 1.0 for h in hits), query
    assert top_ids(shop, "refund\x00shipping", 6)[:1] in (["returns-0"], ["shipping-0"])


def test_operators_are_searched_as_words(shop: Conn) -> None:
    assert top_ids(shop, "refund:* & !shipping")[0] == "returns-0"
    assert top_ids(shop, "ｒｅｆｕｎｄ")[0] == "returns-0"
    assert tsquery_literal("it's\\") == "'it''s\\\\'"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query=st.text(
        alphabet=st.one_of(
            st.sampled_from(list("'\"()&|!:*<->\\\x00%$ ;AbDrefundship")),
            st.characters(codec="utf-8"),
        ),
        max_size=60,
    )
)
def test_any_text_is_a_safe_query(shop: Conn, query: str) -> None:
    hits = INDEX.search(shop, BOT, query, 3)
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    # and the connection is still usable: no error aborted the transaction
    assert shop.execute("SELECT 1").fetchone() == (1,)
