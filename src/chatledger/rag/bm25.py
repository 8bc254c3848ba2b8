"""Normalising SQLite FTS5 ``bm25()`` to a 0..1 relevance score comparable across queries.

FTS5's bm25 (k1 = 1.2, b = 0.75) is the negated sum over query phrases of
``idf(q) * f(q,D) * (k1 + 1) / (f(q,D) + k1 * (1 - b + b * |D| / avgdl))`` with
``idf(q) = ln((N - n(q) + 0.5) / (n(q) + 0.5))``, floored at 1e-6 when not positive.
Its magnitude depends on how many terms the query has and how rare they are, so a raw
value means nothing on its own.

We divide it by a per-query *reference*: the bm25 a chunk of average length would get if
it contained every query term exactly once, which is simply ``sum(idf(q))`` (the frequency
factor is exactly 1 at f = 1, |D| = avgdl), and squash the ratio with tanh::

    coverage = -bm25 / sum(idf(q))        # ~ share of the query's idf mass the chunk holds
    score    = tanh(coverage)             # 0..1, monotone, ~coverage while coverage is small

A chunk holding every query word once at typical density scores tanh(1) = 0.76; holding
the words carrying half the query's idf mass, about 0.46; repeated mentions push towards 1.
The value depends only on the index content and the query, so a threshold means the same
for short and long questions. Terms in more than half the rows get FTS5's floored idf and
so count for nothing in either the numerator or the reference (in a tiny corpus every
term is floored, and the ratio degrades gracefully to plain query-word coverage).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

_IDF_FLOOR = 1e-6  # as in fts5_aux.c: terms in more than half the rows carry ~no weight


def idf(n_rows: int, n_hit: int) -> float:
    """The IDF exactly as FTS5 computes it for one phrase."""
    value = math.log((n_rows - n_hit + 0.5) / (n_hit + 0.5))
    return value if value > 0.0 else _IDF_FLOOR


def reference_score(idfs: Iterable[float]) -> float:
    """bm25 magnitude of an average-length chunk containing each query term once."""
    return math.fsum(idfs)


def normalised(raw_bm25: float, reference: float) -> float:
    """Map FTS5's raw (negative, lower-is-better) bm25 to 0..1, rounded to 6 places."""
    if reference <= 0.0:
        return 0.0
    return round(math.tanh(max(0.0, -raw_bm25 / reference)), 6)
