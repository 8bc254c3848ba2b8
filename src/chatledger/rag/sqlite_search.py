"""Ranked search over the FTS5 schema of :mod:`chatledger.rag.index`.

Why not simply ``MATCH 'a OR b OR c' ORDER BY bm25()``: FTS5 computes bm25 (about 2 us)
for every matching row before sorting, so a word present in a large share of the chunks
costs time in proportion to the index while adding little to the ranking. The query's words
are therefore split, rarest first, within a budget of ``SCORED_ROWS_BUDGET`` candidate rows:

* scored words: the rarest words whose document frequencies add up to at most the budget
  (at least the rarest one). Chunks must hold one of them (all of them, see below), and are
  ranked by FTS5's own bm25 over these words;
* common words (the rest): they cannot pull a chunk in; each adds its idf to the score of a
  candidate that holds it, i.e. counts as if it occurred once in a chunk of average length
  (BM25's value for exactly that case). Presence is a doclist intersection: cheap.

When even the rarest word is over the budget and the two rarest words occur together in at
least ``top_k`` chunks, candidates must hold both (``require_all``). When every scored word
is in more than half the chunks, FTS5 floors their idf to 1e-6 and bm25 has nothing left to
rank by but term frequency: only the newest ``UNINFORMATIVE_QUERY_ROWS`` matches are scored.

When the document frequencies of all the query's words add up to at most the budget (as in
any small index), every word is scored and the ranking is exactly FTS5's bm25. The score
``s`` of a chunk (bm25 units, higher is better) is normalised by :mod:`chatledger.rag.bm25`
with the idf of *all* the query's words as the reference.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from chatledger.rag import bm25
from chatledger.rag.fts_query import match_expression, query_terms, quote_term
from chatledger.rag.retrieval import Hit

SCORED_ROWS_BUDGET = 400  # x ~2.5 us of bm25 per row: about 1 ms of scoring
UNINFORMATIVE_QUERY_ROWS = 2000
_MIN_POOL = 100

_FTS = "retrieval_chunks_fts"
# Column weights: text 1.0, heading 0.5 (headings repeat over a section's chunks). CROSS
# JOIN pins the FTS table as the outer loop: the planner must never start from the
# chatbot index and run one MATCH per chunk.
_CANDIDATES_SQL = f"""
    SELECT c.id, bm25({_FTS}, 1.0, 0.5) AS raw
    FROM {_FTS} CROSS JOIN retrieval_chunks AS c ON c.id = {_FTS}.rowid
    WHERE {_FTS} MATCH ? AND c.chatbot_id = ?
    ORDER BY raw, c.id
    LIMIT ?
"""
_CAPPED_CANDIDATES_SQL = f"""
    SELECT c.id, h.raw
    FROM (
        SELECT rowid AS id, bm25({_FTS}, 1.0, 0.5) AS raw
        FROM {_FTS} WHERE {_FTS} MATCH ?
        ORDER BY rowid DESC LIMIT {UNINFORMATIVE_QUERY_ROWS}
    ) AS h CROSS JOIN retrieval_chunks AS c ON c.id = h.id
    WHERE c.chatbot_id = ?
    ORDER BY h.raw, c.id
    LIMIT ?
"""
_ROWIDS_SQL = f"SELECT rowid FROM {_FTS} WHERE {_FTS} MATCH ?"
_COUNT_SQL = f"SELECT count(*) FROM {_FTS} WHERE {_FTS} MATCH ?"
_DETAILS_SQL = (
    "SELECT id, chunk_id, document_id, document_version, text, heading, page, sha256"
    " FROM retrieval_chunks WHERE id IN ({marks})"
)


@dataclass(frozen=True, slots=True)
class QueryPlan:
    scored: tuple[str, ...]
    common: tuple[str, ...]
    require_all: bool  # candidates must hold every scored word, not just one
    capped: bool
    idf: dict[str, float]
    reference: float  # sum of idf over every query word, present in the index or not

    @property
    def anchor(self) -> str:
        """The MATCH expression that selects and scores candidates."""
        if self.require_all:
            return " AND ".join(quote_term(t) for t in self.scored)
        return match_expression(list(self.scored))


def plan_query(conn: sqlite3.Connection, terms: Sequence[str], top_k: int = 5) -> QueryPlan | None:
    """Split the query's words as described above; None when no word is in the index."""
    (n_rows,) = conn.execute("SELECT count(*) FROM retrieval_chunks").fetchone()
    counts = {t: _count(conn, quote_term(t)) for t in terms}
    idf = {t: bm25.idf(n_rows, n) for t, n in counts.items()}
    present = sorted((t for t in terms if counts[t] > 0), key=lambda t: (counts[t], t))
    if not present:
        return None
    scored = [present[0]]
    for word in present[1:]:
        if sum(counts[t] for t in scored) + counts[word] > SCORED_ROWS_BUDGET:
            break
        scored.append(word)
    require_all = False
    if counts[present[0]] > SCORED_ROWS_BUDGET and len(present) > 1:
        pair = " AND ".join(quote_term(t) for t in present[:2])
        if _count(conn, pair) >= top_k:
            scored, require_all = present[:2], True
    return QueryPlan(
        scored=tuple(scored),
        common=tuple(t for t in present if t not in scored),
        require_all=require_all,
        capped=all(2 * counts[t] > n_rows for t in scored),
        idf=idf,
        reference=bm25.reference_score(idf.values()),
    )


def _count(conn: sqlite3.Connection, expression: str) -> int:
    count: int = conn.execute(_COUNT_SQL, (expression,)).fetchone()[0]
    return count


def search(conn: sqlite3.Connection, chatbot_id: str, query: str, top_k: int) -> list[Hit]:
    """The ``top_k`` best chunks of ``chatbot_id`` for ``query``, best first."""
    terms = query_terms(query)
    plan = plan_query(conn, terms, top_k) if terms else None
    if plan is None:
        return []
    anchor = plan.anchor
    bonus: defaultdict[int, float] = defaultdict(float)
    for word in plan.common:
        for (rowid,) in conn.execute(_ROWIDS_SQL, (f"({anchor}) AND {quote_term(word)}",)):
            bonus[rowid] += plan.idf[word]
    max_bonus = sum(plan.idf[w] for w in plan.common)
    sql = _CAPPED_CANDIDATES_SQL if plan.capped else _CANDIDATES_SQL
    pool = max(_MIN_POOL, 10 * top_k)
    while True:
        rows = conn.execute(sql, (anchor, chatbot_id, pool)).fetchall()
        # s = -bm25 over the distinctive words + idf of each common word present
        scored = sorted((raw - bonus[rowid], rowid) for rowid, raw in rows)[:top_k]
        exhausted = len(rows) < pool
        # Unfetched candidates have raw >= the last one fetched: even with every common
        # word they cannot beat the current k-th score, or we fetch a larger pool.
        if exhausted or len(scored) < top_k or rows[-1][1] - max_bonus > scored[-1][0]:
            break
        pool *= 4
    return _hits(conn, scored, plan.reference)


def _hits(conn: sqlite3.Connection, scored: list[tuple[float, int]], reference: float) -> list[Hit]:
    if not scored:
        return []
    ids = [rowid for _, rowid in scored]
    marks = ",".join("?" * len(ids))
    details = {row[0]: row[1:] for row in conn.execute(_DETAILS_SQL.format(marks=marks), ids)}
    hits = []
    for neg_score, rowid in scored:
        chunk_id, document_id, version, text, heading, page, sha256 = details[rowid]
        score = bm25.normalised(neg_score, reference)
        hits.append(
            Hit(chunk_id, document_id, version, text, heading, page, sha256, score, neg_score)
        )
    return hits
