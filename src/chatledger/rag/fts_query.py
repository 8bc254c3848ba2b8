"""Turn an arbitrary user question into a safe SQLite FTS5 MATCH expression.

FTS5 has its own query language (``"phrases"``, ``AND``/``OR``/``NOT``, ``NEAR(...)``,
``column:`` filters, ``^`` and ``*``, parentheses). A visitor's question is data, not a
query, so we never pass it through: we extract its words ourselves, drop stop words, and
quote every word as an FTS5 string, joined with ``OR``. Quoted strings cannot carry
operators, so no input can raise an FTS5 syntax error or change the query's meaning.
"""

from __future__ import annotations

from chatledger.rag.tokens import STOP_WORDS, stem, words

# Bounds the work of a pasted essay: BM25 cost grows with the number of OR'ed terms.
MAX_QUERY_TERMS = 32
# Longer "words" are base64 blobs or garbage; the tail adds nothing to matching.
MAX_TERM_CHARS = 64


def query_terms(query: str) -> list[str]:
    """The distinct words to search for, in query order.

    Stop words are dropped unless the query is nothing but stop words ("The Who").
    Words that share a light stem ("refund", "refunds") are searched once, since the
    index's Porter stemmer would match them to the same postings anyway.
    """
    all_words = [w[:MAX_TERM_CHARS] for w in words(query)]
    content = [w for w in all_words if w not in STOP_WORDS] or all_words
    seen: set[str] = set()
    terms: list[str] = []
    for w in content:
        key = stem(w)
        if key in seen:
            continue
        seen.add(key)
        terms.append(w)
        if len(terms) == MAX_QUERY_TERMS:
            break
    return terms


def quote_term(term: str) -> str:
    """An FTS5 string literal: double quotes inside are escaped by doubling."""
    return '"' + term.replace('"', '""') + '"'


def match_expression(terms: list[str]) -> str:
    """``"a" OR "b" OR ...``: any term may match, BM25 rewards chunks matching more."""
    return " OR ".join(quote_term(t) for t in terms)
