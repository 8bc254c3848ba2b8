"""SqliteIndex: search quality, scores, deletion, versions, transactions, hostile queries."""

from __future__ import annotations

import math
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatledger.errors import Conflict, InvalidInput
from chatledger.rag.fts_query import MAX_QUERY_TERMS, match_expression, query_terms
from chatledger.rag.index import IndexChunk, RetrievalIndex, SqliteIndex
from chatledger.rag.retrieval import make_chunk_id
from chatledger.rag.sqlite_search import plan_query

pytestmark = pytest.mark.sqlite_only(
    reason="SqliteIndex (FTS5) on an in-memory SQLite database; PostgresIndex: "
    "tests/postgres/test_pg_retrieval.py"
)

BOT = "bot-1"  # the chatbot of the `shop` fixture
INDEX = SqliteIndex()


def top_ids(conn: sqlite3.Connection, query: str, k: int = 3) -> list[str]:
    return [h.chunk_id for h in INDEX.search(conn, BOT, query, k)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("How long do refunds take?", "returns-0"),
        ("How many days is the return window for unused items?", "returns-1"),
        ("how much is express shipping", "shipping-0"),
        ("Do you deliver internationally? who pays customs fees", "shipping-1"),
        ("is my espresso machine under warranty", "warranty-0"),
        ("I forgot my password", "accounts-0"),
        ("REFUNDED", "returns-0"),  # case and stemming (porter: refunded -> refund)
    ],
)
def test_search_ranks_the_answering_chunk_first(
    shop: sqlite3.Connection, query: str, expected: str
) -> None:
    assert top_ids(shop, query)[0] == expected


def test_hits_carry_provenance_and_bounded_ordered_scores(shop: sqlite3.Connection) -> None:
    hits = INDEX.search(shop, BOT, "shipping costs for express orders", top_k=5)
    assert hits
    first = hits[0]
    assert (first.document_id, first.document_version, first.heading) == (
        "shipping",
        1,
        "Shipping costs",
    )
    assert first.sha256 == "sha-shipping"
    assert first.text.startswith("Standard shipping is free")
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.raw_bm25 < 0 for h in hits)  # FTS5's own value: negative, lower is better


def test_score_reflects_query_coverage(shop: sqlite3.Connection) -> None:
    full = INDEX.search(shop, BOT, "express shipping", 1)[0]
    half = INDEX.search(shop, BOT, "express teleportation", 1)[0]
    assert full.chunk_id == half.chunk_id == "shipping-0"
    # Same chunk; the second query's other half is absent from the corpus.
    assert full.score > 0.6
    assert half.score < full.score


def test_search_is_deterministic(shop: sqlite3.Connection) -> None:
    first = INDEX.search(shop, BOT, "refund payment method items", 5)
    assert INDEX.search(shop, BOT, "refund payment method items", 5) == first


def test_min_score_and_top_k(shop: sqlite3.Connection) -> None:
    everything = INDEX.search(shop, BOT, "days items orders", 10)
    assert len(everything) > 2
    assert len(INDEX.search(shop, BOT, "days items orders", 2)) == 2
    cut = everything[1].score
    kept = INDEX.search(shop, BOT, "days items orders", 10, min_score=cut)
    assert kept
    assert all(h.score >= cut for h in kept)
    assert len(kept) < len(everything) or everything[-1].score >= cut


@pytest.mark.parametrize("top_k", [0, -1, 101, True])
def test_invalid_top_k_is_refused(shop: sqlite3.Connection, top_k: int) -> None:
    with pytest.raises(InvalidInput):
        INDEX.search(shop, BOT, "refund", top_k)


def test_invalid_min_score_is_refused(shop: sqlite3.Connection) -> None:
    with pytest.raises(InvalidInput):
        INDEX.search(shop, BOT, "refund", 3, min_score=1.5)


def test_unknown_words_and_empty_queries_find_nothing(shop: sqlite3.Connection) -> None:
    assert INDEX.search(shop, BOT, "zeppelin aardvark", 3) == []
    assert INDEX.search(shop, BOT, "", 3) == []
    assert INDEX.search(shop, BOT, "?!  ...", 3) == []


def test_stop_word_only_query_is_searched_as_is(shop: sqlite3.Connection) -> None:
    assert query_terms("The Who") == ["the", "who"]
    assert isinstance(INDEX.search(shop, BOT, "The Who", 3), list)


def test_chatbots_are_isolated(shop: sqlite3.Connection) -> None:
    assert INDEX.search(shop, "another-bot", "refund", 3) == []
    INDEX.add_chunks(shop, "another-bot", "other-doc", 1, [IndexChunk("x-0", "refund rules")])
    assert top_ids(shop, "refund", 10).count("x-0") == 0
    assert [h.chunk_id for h in INDEX.search(shop, "another-bot", "refund", 3)] == ["x-0"]


def test_remove_document_takes_effect_at_once(shop: sqlite3.Connection) -> None:
    assert top_ids(shop, "refund")[0] == "returns-0"
    removed = INDEX.remove_document(shop, "returns")
    assert removed == 2
    # Not committed yet: the caller's transaction already sees it gone.
    assert shop.in_transaction
    assert "returns-0" not in top_ids(shop, "refund", 10)
    assert INDEX.get_chunks(shop, BOT, ["returns-0"]) == []


def test_remove_chatbot(shop: sqlite3.Connection) -> None:
    assert INDEX.remove_chatbot(shop, BOT) == 6
    assert INDEX.search(shop, BOT, "refund", 3) == []


def test_a_new_version_replaces_the_old_one(shop: sqlite3.Connection) -> None:
    v2 = [IndexChunk("returns-v2-0", "Refunds now take 5 days.", "Refunds", None, "sha-v2")]
    INDEX.add_chunks(shop, BOT, "returns", 2, v2)
    hits = INDEX.search(shop, BOT, "refund", 10)
    assert [(h.chunk_id, h.document_version) for h in hits if h.document_id == "returns"] == [
        ("returns-v2-0", 2)
    ]


def test_more_chunks_of_the_same_version_are_appended(shop: sqlite3.Connection) -> None:
    INDEX.add_chunks(shop, BOT, "returns", 1, [IndexChunk("returns-9", "Gift cards: no refund.")])
    ids = {h.chunk_id for h in INDEX.search(shop, BOT, "refund", 10)}
    assert {"returns-0", "returns-9"} <= ids


def test_writes_stay_in_the_callers_transaction(conn: sqlite3.Connection) -> None:
    conn.commit()
    INDEX.add_chunks(conn, BOT, "doc", 1, [IndexChunk("c0", "The moon is made of rock.")])
    assert conn.in_transaction
    assert top_ids(conn, "moon") == ["c0"]
    conn.rollback()
    assert top_ids(conn, "moon") == []


def test_duplicate_chunk_id_is_a_conflict(shop: sqlite3.Connection) -> None:
    with pytest.raises(Conflict):
        INDEX.add_chunks(shop, BOT, "elsewhere", 1, [IndexChunk("returns-0", "duplicate")])


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("chatbot_id", {"chatbot_id": ""}),
        ("document_id", {"document_id": ""}),
        ("document_version", {"document_version": "1"}),
    ],
)
def test_invalid_add_arguments(
    conn: sqlite3.Connection, field: str, kwargs: dict[str, object]
) -> None:
    args: dict[str, object] = {"chatbot_id": BOT, "document_id": "d", "document_version": 1}
    args.update(kwargs)
    with pytest.raises(InvalidInput):
        INDEX.add_chunks(conn, chunks=[IndexChunk("c", "text")], **args)  # type: ignore[arg-type]


def test_get_chunks_keeps_the_requested_order(shop: sqlite3.Connection) -> None:
    hits = INDEX.get_chunks(shop, BOT, ["shipping-1", "missing", "returns-0"])
    assert [h.chunk_id for h in hits] == ["shipping-1", "returns-0"]
    assert INDEX.get_chunks(shop, "another-bot", ["returns-0"]) == []


def test_sqlite_index_satisfies_the_protocol() -> None:
    index: RetrievalIndex[sqlite3.Connection] = SqliteIndex()
    assert index is not None
    assert make_chunk_id("doc-1", 3, 7) == "doc-1:v3:7"


def test_create_schema_is_idempotent_and_does_not_commit(conn: sqlite3.Connection) -> None:
    INDEX.add_chunks(conn, BOT, "d", 1, [IndexChunk("c", "alpha")])
    INDEX.create_schema(conn)
    assert conn.in_transaction  # executescript() would have committed
    conn.rollback()


# --- hostile queries ----------------------------------------------------------------------

HOSTILE = [
    '"',
    '"unbalanced',
    "((((",
    "))",
    "a AND",
    "OR OR OR",
    "NOT",
    "NEAR(refund shipping, 2)",
    "text:refund",
    "heading : warranty",
    "{text heading}: refund",
    "refund*",
    "^refund",
    "-refund +shipping",
    "refund AND NOT shipping",
    "'; DROP TABLE retrieval_chunks; --",
    "\x00refund\x00",
    "ｒｅｆｕｎｄ",  # full-width: NFKC makes it "refund"
    "café naïve",
    "退货 政策",
    "🙂🙃 refund",
    "a_b refund_policy",
    "x" * 10_000,
    " ".join(f"w{i}" for i in range(500)),
    "rowid:1",
    "* OR *",
    "[1] refund",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_raise(shop: sqlite3.Connection, query: str) -> None:
    hits = INDEX.search(shop, BOT, query, 5)
    assert all(0.0 <= h.score <= 1.0 for h in hits)


def test_operators_are_searched_as_words(shop: sqlite3.Connection) -> None:
    assert top_ids(shop, "NEAR(refund shipping, 2)")[0] in {"returns-0", "shipping-0"}
    assert top_ids(shop, "text:refund")[0] == "returns-0"
    assert top_ids(shop, "ｒｅｆｕｎｄ")[0] == "returns-0"


def test_query_terms_are_bounded() -> None:
    terms = query_terms(" ".join(f"word{i}" for i in range(500)))
    assert len(terms) == MAX_QUERY_TERMS
    assert all(len(t) <= 64 for t in query_terms("y" * 1000))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.text(max_size=80))
def test_any_text_is_a_safe_query(shop: sqlite3.Connection, query: str) -> None:
    hits = INDEX.search(shop, BOT, query, 3)
    assert all(0.0 <= h.score <= 1.0 for h in hits)


@settings(max_examples=150, deadline=None)
@given(
    query=st.text(alphabet=st.sampled_from(list("\"()*:^-+{}[] ANDORNEAT\\'\x00ab")), max_size=40)
)
def test_operator_soup_builds_valid_fts5(query: str) -> None:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61')")
        conn.execute("INSERT INTO t VALUES ('a b and or near')")
        terms = query_terms(query)
        if terms:
            conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (match_expression(terms),))
    finally:
        conn.close()


# --- the common-word plan -----------------------------------------------------------------

PLAIN_OR_SQL = (
    "SELECT c.chunk_id, bm25(retrieval_chunks_fts, 1.0, 0.5) AS b"
    " FROM retrieval_chunks_fts JOIN retrieval_chunks c ON c.id = retrieval_chunks_fts.rowid"
    " WHERE retrieval_chunks_fts MATCH ? ORDER BY b, c.id LIMIT ?"
)


def test_small_indexes_rank_exactly_as_fts5(shop: sqlite3.Connection) -> None:
    query = "refund shipping days items"
    hits = INDEX.search(shop, BOT, query, 5)
    exact = shop.execute(PLAIN_OR_SQL, (match_expression(query_terms(query)), 5)).fetchall()
    assert [h.chunk_id for h in hits] == [cid for cid, _ in exact]
    assert [h.raw_bm25 for h in hits] == pytest.approx([b for _, b in exact])


@pytest.fixture
def big(conn: sqlite3.Connection) -> sqlite3.Connection:
    """3,000 chunks: "shop" in 30% (common), "refund" in 10% (scored), filler."""
    chunks = []
    for i in range(3000):
        words = [f"filler{i % 97}"] * (1 + i % 7)
        if i % 10 < 3:
            words += ["shop"] * (1 + i % 2)
        if i % 10 == (i // 10) % 10:
            words += ["refund"] * (1 + i % 3)
        chunks.append(IndexChunk(f"c{i}", " ".join(words)))
    INDEX.add_chunks(conn, BOT, "d", 1, chunks)
    return conn


def test_plan_scores_the_rarest_words_within_the_budget(big: sqlite3.Connection) -> None:
    plan = plan_query(big, ["shop", "refund", "zeppelin"])
    assert plan is not None
    # refund (300 chunks) fits the 400-row budget; shop (900) would exceed it.
    assert (plan.scored, plan.common, plan.require_all, plan.capped) == (
        ("refund",),
        ("shop",),
        False,
        False,
    )
    assert plan.idf["shop"] == pytest.approx(math.log((3000 - 900 + 0.5) / (900 + 0.5)))
    assert plan.reference == pytest.approx(sum(plan.idf.values()))  # zeppelin included
    both = plan_query(big, ["refund", "filler1"])
    assert both is not None
    assert (both.scored, both.common) == (("filler1", "refund"), ())  # 31 + 300 rows fit
    assert plan_query(big, ["zeppelin"]) is None


def test_words_over_the_budget_are_required_together(conn: sqlite3.Connection) -> None:
    chunks = []
    for i in range(2500):
        words = ["alpha"] * (i % 25 < 12) + ["beta"] * (i % 23 < 10) + [f"f{i % 50}"]
        chunks.append(IndexChunk(f"c{i}", " ".join(words)))
    INDEX.add_chunks(conn, BOT, "d", 1, chunks)
    plan = plan_query(conn, ["alpha", "beta"])
    assert plan is not None
    assert (plan.scored, plan.require_all, plan.anchor) == (
        ("beta", "alpha"),
        True,
        '"beta" AND "alpha"',
    )
    hits = INDEX.search(conn, BOT, "alpha beta", 5)
    assert len(hits) == 5
    assert all({"alpha", "beta"} <= set(h.text.split()) for h in hits)


def test_common_words_add_their_idf_when_present(big: sqlite3.Connection) -> None:
    """Brute force over every chunk holding the scored word: FTS5 bm25 over "refund",
    minus idf("shop") where the chunk holds "shop". More than the first candidate pool
    holds "refund", so the pool-widening path is exercised too."""
    plan = plan_query(big, ["refund", "shop"])
    assert plan is not None
    rows = big.execute(PLAIN_OR_SQL, ('"refund"', 10_000)).fetchall()
    assert len(rows) > 100
    texts = dict(big.execute("SELECT chunk_id, text FROM retrieval_chunks").fetchall())
    ids = {cid: n for n, cid in enumerate(texts)}
    expected = sorted(
        (raw - (plan.idf["shop"] if "shop" in texts[cid].split() else 0.0), ids[cid], cid)
        for cid, raw in rows
    )[:10]
    hits = INDEX.search(big, BOT, "refund shop", 10)
    assert [h.chunk_id for h in hits] == [cid for _, _, cid in expected]
    assert [h.raw_bm25 for h in hits] == pytest.approx([v for v, _, _ in expected])
    assert all(0.0 < h.score <= 1.0 for h in hits)


def test_words_in_most_chunks_are_answered_within_bounds(conn: sqlite3.Connection) -> None:
    INDEX.add_chunks(
        conn, BOT, "d", 1, [IndexChunk(f"c{i}", "shop " * (1 + i % 3)) for i in range(50)]
    )
    plan = plan_query(conn, ["shop"])
    assert plan is not None
    assert plan.capped  # every chunk holds it: FTS5 floors its idf
    hits = INDEX.search(conn, BOT, "shop", 5)
    assert len(hits) == 5
    assert all(math.isfinite(h.score) for h in hits)
