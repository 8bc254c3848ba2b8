"""Retrieval benchmark: each figure beside a baseline measured in the same run.

    python benchmarks/bench_retrieval.py [--chunks 10000] [--queries 400] [--seed 7]

Corpus: generated prose. A Zipf-distributed vocabulary whose most frequent words are real
English stop words, followed by ~8,000 synthetic content words, so that the commonest
content words appear in 10-30% of the chunks, as in real documentation. Chunks are ~120
words in sentences, under one chatbot (plus a second chatbot holding 10% more chunks, so
the chatbot filter has something to filter). The SQLite file is on disk, WAL mode.

Questions: each is written about a random chunk ("what is the ... of ...?") with 2-5 of its
content words; 10% also carry a word found nowhere.

Latencies are wall-clock; search is also given in CPU time of the calling thread, since
on a shared machine (the load average is printed) waiting for a core inflates wall time.

Figures:
1. SqliteIndex.search (top 5, scored and normalised) p50 / p95 / p99 / max, beside
   (a) a plain FTS5 MATCH of the same sanitised terms, no ranking, LIMIT 5, and
   (b) the plain ranked FTS5 query (``ORDER BY bm25 LIMIT 5``, chatbot join, no plan);
2. recall@5: share of questions whose source chunk is in the top 5 (both ranked queries);
3. offline answer composition (OfflineResponder.complete over the top-5 hits) p50 / p95,
   beside a trivial extractive baseline (first sentence of the best passage, cited);
4. groundedness scoring of that answer, p50 / p95;
5. index build throughput, beside a plain INSERT of the same rows without FTS.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chatledger.rag import grounding
from chatledger.rag.fts_query import match_expression, query_terms
from chatledger.rag.index import IndexChunk, SqliteIndex
from chatledger.rag.offline import OfflineResponder
from chatledger.rag.prompting import build_request
from chatledger.rag.providers import CompletionRequest
from chatledger.rag.tokens import STOP_WORDS, content_terms, split_sentences

T = TypeVar("T")
BOT = "bench-bot"
OTHER_BOT = "other-bot"
FUNCTION_WORDS = [
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "with", "be", "on",
    "by", "this", "are", "or", "at", "from", "an", "which", "can", "you", "will", "not", "all",
    "has", "have", "their", "more", "when", "each", "if", "there", "other", "into", "its",
]  # fmt: skip
SYLLABLES = [
    "ka", "lo", "mi", "ne", "ru", "sa", "te", "vi", "po", "da", "gre", "tor", "pla", "shi",
    "mon", "bel", "cra", "dun", "fen", "gar", "hol", "jin", "kes", "lum", "mar", "nor",
]  # fmt: skip


def make_vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in STOP_WORDS:
            words.add(word)
    return FUNCTION_WORDS + sorted(words)


def make_corpus(rng: random.Random, n_chunks: int) -> tuple[list[str], list[IndexChunk]]:
    vocabulary = make_vocabulary(rng, 8_000)
    weights = [1.0 / rank for rank in range(1, len(vocabulary) + 1)]
    chunks = []
    for i in range(n_chunks):
        sentences: list[str] = []
        while sum(len(s.split()) for s in sentences) < 120:
            words = rng.choices(vocabulary, weights, k=rng.randint(8, 20))
            sentences.append(" ".join(words).capitalize() + ".")
        heading = " ".join(rng.choices(vocabulary[len(FUNCTION_WORDS) :], k=3)).title()
        chunks.append(IndexChunk(f"chunk-{i:06d}", " ".join(sentences), heading, i // 8, "0" * 64))
    return vocabulary, chunks


def make_questions(
    rng: random.Random, chunks: list[IndexChunk], count: int
) -> list[tuple[str, str]]:
    questions = []
    for _ in range(count):
        chunk = rng.choice(chunks)
        terms = sorted(set(content_terms(chunk.text)) & set(chunk.text.lower().split()))
        picked = rng.sample(terms, k=min(len(terms), rng.randint(2, 5)))
        if rng.random() < 0.1:
            picked.append("zzyzx")
        questions.append((f"What is the {' '.join(picked[:-1])} of {picked[-1]}?", chunk.chunk_id))
    return questions


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter_ns()
    result = fn()
    return (time.perf_counter_ns() - started) / 1e6, result


def cpu_timed(fn: Callable[[], T]) -> tuple[float, float, T]:
    """(wall ms, CPU ms of this thread, result)."""
    cpu = time.thread_time_ns()
    wall, result = timed(fn)
    return wall, (time.thread_time_ns() - cpu) / 1e6, result


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):6.2f} ms   p95 {pct(values, 95):6.2f} ms   "
        f"p99 {pct(values, 99):6.2f} ms   max {max(values):6.2f} ms"
    )


PLAIN_SQL = "SELECT rowid FROM retrieval_chunks_fts WHERE retrieval_chunks_fts MATCH ? LIMIT 5"
RANKED_SQL = """
    SELECT c.chunk_id, bm25(retrieval_chunks_fts, 1.0, 0.5) AS b
    FROM retrieval_chunks_fts CROSS JOIN retrieval_chunks AS c
      ON c.id = retrieval_chunks_fts.rowid
    WHERE retrieval_chunks_fts MATCH ? AND c.chatbot_id = ?
    ORDER BY b LIMIT 5
"""


def fetch(conn: sqlite3.Connection, sql: str, params: tuple[str, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def first_sentence_answer(request: CompletionRequest) -> str:
    """The trivial extractive baseline: the best passage's first sentence, cited."""
    return f"{split_sentences(request.passages[0].text)[0]} [1]" if request.passages else ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    _, chunks = make_corpus(rng, args.chunks)
    _, other = make_corpus(random.Random(args.seed + 1), args.chunks // 10)
    other = [IndexChunk("o-" + c.chunk_id, c.text, c.heading, c.page, c.sha256) for c in other]
    questions = make_questions(rng, chunks, args.queries)
    index = SqliteIndex()

    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "bench.db")
        conn.execute("PRAGMA journal_mode=WAL")
        index.create_schema(conn)
        build_ms, _ = timed(lambda: index.add_chunks(conn, BOT, "doc", 1, chunks))
        index.add_chunks(conn, OTHER_BOT, "other-doc", 1, other)
        conn.commit()
        conn.execute("CREATE TABLE plain (id INTEGER PRIMARY KEY, chunk_id TEXT, text TEXT)")
        plain_ms, _ = timed(
            lambda: conn.executemany(
                "INSERT INTO plain (chunk_id, text) VALUES (?, ?)",
                [(c.chunk_id, c.text) for c in chunks],
            )
        )
        conn.rollback()

        for question, _ in questions[:20]:  # warm the page cache and statement cache
            index.search(conn, BOT, question, 5)

        ours: list[float] = []
        ours_cpu: list[float] = []
        plain: list[float] = []
        ranked: list[float] = []
        found_ours = found_ranked = 0
        hits_by_question = []
        for question, source in questions:
            ms, cpu, hits = cpu_timed(partial(index.search, conn, BOT, question, 5))
            ours.append(ms)
            ours_cpu.append(cpu)
            hits_by_question.append(hits)
            found_ours += source in [h.chunk_id for h in hits]
            expression = match_expression(query_terms(question))
            ms, _ = timed(partial(fetch, conn, PLAIN_SQL, (expression,)))
            plain.append(ms)
            ms, rows = timed(partial(fetch, conn, RANKED_SQL, (expression, BOT)))
            ranked.append(ms)
            found_ranked += source in [r[0] for r in rows]

        responder = OfflineResponder()
        compose: list[float] = []
        trivial: list[float] = []
        scoring: list[float] = []
        unanswered = 0
        for (question, _), hits in zip(questions, hits_by_question, strict=True):
            request = build_request(system_prompt="", hits=hits, question=question)
            ms, completion = timed(partial(responder.complete, request))
            compose.append(ms)
            unanswered += completion.unanswered
            ms, _ = timed(partial(first_sentence_answer, request))
            trivial.append(ms)
            ms, _ = timed(partial(grounding.assess, completion.text, request.passages))
            scoring.append(ms)
        conn.close()

    n = len(questions)
    print(
        f"ChatLedger retrieval benchmark: {args.chunks:,} chunks (+{len(other):,} of another"
        f" chatbot), {n} questions, seed {args.seed}, load average {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} CPUs"
    )
    print(f"search, SqliteIndex (ranked, normalised)    {summary(ours)}")
    print(f"  the same, CPU time of the thread          {summary(ours_cpu)}")
    print(f"  baseline: plain FTS5 MATCH, no ranking    {summary(plain)}")
    print(f"  baseline: FTS5 ORDER BY bm25, no plan     {summary(ranked)}")
    print(
        f"recall@5 of the source chunk: SqliteIndex {found_ours / n:.1%},"
        f" plain ranked FTS5 {found_ranked / n:.1%}"
    )
    print(f"offline answer composition                  {summary(compose)}")
    print(f"  baseline: first sentence of best passage  {summary(trivial)}")
    print(f"groundedness scoring of the answer          {summary(scoring)}")
    print(f"unanswered ('I don't know'): {unanswered} of {n}")
    print(
        f"index build: {len(chunks) / build_ms * 1000:,.0f} chunks/s,"
        f" baseline plain INSERT without FTS: {len(chunks) / plain_ms * 1000:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
