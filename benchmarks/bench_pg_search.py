"""Audit search on PostgreSQL: p95 per filter and per kind of text query, each beside a
baseline measured in the same run, and beside the same figures on SQLite.

    python benchmarks/bench_pg_search.py [--events 200000] [--queries 100] [--no-sqlite]

Starts a private PostgreSQL 15 server (tests/pg_server.py; fsync off, which changes only how
fast the ledger is built, or the superuser URL in CHATLEDGER_TEST_POSTGRES_URL), sets up the
owner and application roles, and builds a ledger of --events entries of bench_search.py's
realistic mix as the application role. Then:

1. building the audit index (text, tsvector, facets) from scratch;
2. filtered search p95 (newest first, 50 per page), beside one plain indexed SQL query doing
   the same job;
3. full-text search p95 (with snippets), beside a bare ``tsv @@ tsquery`` query (seqs only,
   newest first, 50);
4. unless --no-sqlite: the same ledger built on SQLite and the same searches there.

Targets (issue 5, at 1,000,000 events): search p95 <= 100 ms filtered, <= 300 ms full text.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from benchmarks.bench_search import RARE, ROLES, WORDS, Mix, pct, timed  # noqa: E402

from chatledger.audit.search import Filters, search  # noqa: E402
from chatledger.audit.textindex import index_for  # noqa: E402
from chatledger.config import Settings  # noqa: E402
from chatledger.ledger.service import Ledger  # noqa: E402
from chatledger.runtime import open_ledger  # noqa: E402

APP_ROLE, APP_PASSWORD = "chatledger_bench_app", "chatledger-bench-only"
BATCH = 2000

Case = tuple[str, Callable[[random.Random], dict[str, str]], str, Callable[[random.Random], tuple[Any, ...]]]  # fmt: skip  # noqa: E501


def build(ledger: Ledger, total: int, label: str) -> None:
    mix = Mix()
    t0 = time.perf_counter()
    done = 0
    while done < total:
        n = min(BATCH, total - done)
        ledger.append_many(mix.batch(n))
        done += n
        if done % 100_000 == 0:
            rate = done / (time.perf_counter() - t0)
            print(f"  {label}: built {done:,} events ({rate:,.0f}/s)", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    print(
        f"{label} ledger: {total:,} events appended in {elapsed:.1f} s ({total / elapsed:,.0f}/s)"
    )


def index(ledger: Ledger, label: str) -> None:
    idx = index_for(ledger)
    t0 = time.perf_counter()
    while not idx.state().complete:
        idx.catch_up(max_entries=50_000)
    elapsed = time.perf_counter() - t0
    size = ledger.size()
    texts = ledger.store.query("SELECT count(*) FROM audit_text")[0][0]
    print(
        f"{label} audit index: {size:,} entries ({texts:,} texts) indexed in {elapsed:.1f} s "
        f"({size / max(elapsed, 1e-9):,.0f} entries/s)"
    )


def cases(
    ledger: Ledger,
) -> tuple[list[Case], list[tuple[str, Callable[[random.Random], dict[str, str]]]]]:
    size = ledger.size()
    convs = [
        str(r[0])
        for r in ledger.store.query(
            "SELECT conversation_id FROM ledger_entries WHERE conversation_id IS NOT NULL "
            "AND seq % 997 = 0"
        )
    ]
    day_ago = ledger.entry(size - 1).ts[:11] + "00:00:00Z"
    filtered: list[Case] = [
        ("actor", lambda r: {"actor": f"usr_{r.randrange(200):04d}"},
         "actor_id = ?", lambda r: (f"usr_{r.randrange(200):04d}",)),
        ("action prefix guard.*", lambda r: {"action": "guard.*"},
         "action IN ('guard.anomaly', 'guard.injection_detected')", lambda r: ()),
        ("category+outcome", lambda r: {"category": "security", "outcome": "denied"},
         "category = 'security' AND outcome = 'denied'", lambda r: ()),
        ("conversation", lambda r: {"conversation_id": r.choice(convs)},
         "conversation_id = ?", lambda r: (r.choice(convs),)),
        ("chatbot+time", lambda r: {"chatbot_id": f"bot_{r.randrange(20):03d}", "start": day_ago},
         "chatbot_id = ? AND ts >= ?", lambda r: (f"bot_{r.randrange(20):03d}", day_ago)),
        ("role", lambda r: {"role": r.choice(ROLES)}, "", lambda r: ()),
        ("severity", lambda r: {"severity": "high"}, "", lambda r: ()),
        ("role+severity", lambda r: {"role": r.choice(ROLES), "severity": "high"}, "",
         lambda r: ()),
        ("entity", lambda r: {"entity_type": "document",
                              "entity_id": f"doc_{r.randrange(10_000):05d}"},
         "entity_type = 'document' AND entity_id = ?",
         lambda r: (f"doc_{r.randrange(10_000):05d}",)),
        ("outcome blocked", lambda r: {"outcome": "blocked"}, "outcome = 'blocked'", lambda r: ()),
        ("access, oldest first", lambda r: {"category": "access"}, "category = 'access'",
         lambda r: ()),
    ]  # fmt: skip
    text: list[tuple[str, Callable[[random.Random], dict[str, str]]]] = [
        ("common word", lambda r: {"q": r.choice(WORDS[:10])}),
        ("mid word", lambda r: {"q": r.choice(WORDS[20:60])}),
        ("rare word", lambda r: {"q": r.choice(RARE)}),
        ("two words", lambda r: {"q": f"{r.choice(WORDS[:30])} {r.choice(WORDS[30:])}"}),
        ("phrase", lambda r: {"q": f'"{r.choice(WORDS[:5])} {r.choice(WORDS[:5])}"'}),
        ("prefix", lambda r: {"q": r.choice(WORDS)[:4] + "*"}),
        ("word + chatbot", lambda r: {"q": r.choice(WORDS[:40]),
                                      "chatbot_id": f"bot_{r.randrange(20):03d}"}),
    ]  # fmt: skip
    return filtered, text


def run_searches(ledger: Ledger, queries: int, label: str) -> dict[str, float]:
    """p95 (ms) of every case, by name; prints them beside their baselines."""
    postgres = ledger.store.dialect == "postgresql"
    filtered, text = cases(ledger)
    out: dict[str, float] = {}
    query = ledger.store.query
    rng = random.Random(11)
    print(f"\n{label}: filtered search, {queries} queries each (ms)   p50    p95 | plain SQL p95")
    for name, make, sql, params in filtered:
        order = "oldest" if "oldest" in name else "newest"
        lat = timed(
            lambda m=make, o=order: search(ledger, Filters.parse(**m(rng)), order=o), queries
        )  # type: ignore[misc]
        out[name] = pct(lat, 0.95)
        base = "      -"
        if sql:
            direction = "ASC" if order == "oldest" else "DESC"
            q = (
                f"SELECT seq, body FROM ledger_entries WHERE {sql} "
                f"ORDER BY seq {direction} LIMIT 50"
            )
            blat = timed(lambda q=q, p=params: query(q, p(rng)), queries)  # type: ignore[misc]
            base = f"{pct(blat, 0.95):7.2f}"
        print(f"  {name:<40} {pct(lat, 0.5):6.2f} {out[name]:6.2f} | {base}")
    bare = (
        "SELECT seq FROM audit_text WHERE tsv @@ CAST(? AS tsquery) ORDER BY seq DESC LIMIT 50"
        if postgres
        else "SELECT rowid FROM audit_text WHERE audit_text MATCH ? ORDER BY rowid DESC LIMIT 50"
    )
    idx = index_for(ledger)
    print(f"{label}: full-text search, {queries} queries each (ms)  p50    p95 | bare match p95")
    for name, make_q in text:
        lat = timed(lambda m=make_q: search(ledger, Filters.parse(**m(rng))), queries)  # type: ignore[misc]
        out[f"q: {name}"] = pct(lat, 0.95)
        blat = timed(lambda m=make_q: query(bare, (idx.text_query(m(rng)["q"]),)), queries)  # type: ignore[misc]
        print(
            f"  {name:<40} {pct(lat, 0.5):6.2f} {out[f'q: {name}']:6.2f} | {pct(blat, 0.95):7.2f}"
        )
    worst_f = max(v for k, v in out.items() if not k.startswith("q: "))
    worst_q = max(v for k, v in out.items() if k.startswith("q: "))
    print(f"  {label}: worst filtered p95 {worst_f:.1f} ms, worst full-text p95 {worst_q:.1f} ms")
    return out


def main() -> None:
    from tests.pg_server import start_server

    from chatledger.store.postgres_schema import setup_roles

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite figures")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-pg-search-"))
    server = start_server()
    try:
        db = server.create_database("bench_search")
        setup_roles(server.url(db), APP_ROLE, APP_PASSWORD)
        settings = Settings.load(
            root / "pg", database_url=server.url(db, user=APP_ROLE, password=APP_PASSWORD)
        )
        settings.publish_dirs = []
        settings.checkpoint_every = 1_000_000
        ledger = open_ledger(settings)
        try:
            build(ledger, args.events, "PostgreSQL")
            index(ledger, "PostgreSQL")
            pg = run_searches(ledger, args.queries, "PostgreSQL")
        finally:
            ledger.close()
    finally:
        server.stop()
    try:
        if not args.no_sqlite:
            settings = Settings.load(root / "lite")
            settings.publish_dirs = []
            settings.checkpoint_every = 1_000_000
            lite = open_ledger(settings)
            try:
                build(lite, args.events, "SQLite")
                index(lite, "SQLite")
                sq = run_searches(lite, args.queries, "SQLite")
            finally:
                lite.close()
            print(f"\nsearch p95 (ms) at {args.events:,} events      PostgreSQL   SQLite")
            for name, value in pg.items():
                print(f"  {name:<40} {value:8.2f} {sq[name]:8.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
