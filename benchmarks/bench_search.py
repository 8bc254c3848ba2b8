"""Audit search and export benchmark: each figure beside a baseline measured in the same run.

    python benchmarks/bench_search.py [--events 1000000] [--queries 200] [--keep DIR]

Builds a ledger of --events entries of a realistic mix (conversations with user messages,
model calls, answers, retrieval and feedback; logins; guard detections; document and
configuration changes; audit reads), appended through Ledger.append_many in batches of 2,000,
then measures:

1. building the audit index (full text of messages/answers/feedback, role/severity facets);
2. search p95 (newest first, 50 per page) for filtered queries, beside the same filter as one
   plain indexed SQL query on ledger_entries;
3. full-text search p95 (with a highlighted snippet), beside a bare FTS5 MATCH;
4. export of every event to JSON Lines and to OCSF (seconds, events/s), beside a raw scan of
   the entry bodies.

Targets (issue 5, at 1,000,000 events): search p95 <= 100 ms filtered, <= 300 ms full text;
export <= 30 s per format.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chatledger.audit.formats import FormatContext, get_format
from chatledger.audit.search import Filters, auto_workers, prepare_export, search
from chatledger.audit.textindex import index_for, to_fts_query
from chatledger.config import Settings
from chatledger.events import Actor, Entity, Event
from chatledger.ledger.service import Ledger
from chatledger.runtime import open_ledger

BATCH = 2000
WORDS = [
    "account",
    "order",
    "refund",
    "delivery",
    "invoice",
    "password",
    "reset",
    "subscription",
    "cancel",
    "policy",
    "price",
    "warranty",
    "shipping",
    "return",
    "exchange",
    "payment",
    "card",
    "bank",
    "transfer",
    "upgrade",
    "downgrade",
    "plan",
    "support",
    "agent",
    "manager",
    "complaint",
    "broken",
    "late",
    "missing",
    "damaged",
    "replacement",
    "tracking",
    "number",
    "address",
    "change",
    "email",
    "phone",
    "login",
    "error",
    "crash",
    "update",
    "install",
    "download",
    "license",
    "key",
    "trial",
    "discount",
    "coupon",
    "promotion",
    "holiday",
    "opening",
    "hours",
    "store",
    "location",
    "stock",
    "available",
    "size",
    "color",
    "model",
    "version",
    "battery",
    "charger",
    "screen",
    "keyboard",
    "cable",
    "adapter",
    "manual",
    "guide",
]
RARE = [f"zq{n:04d}x" for n in range(2000)]
ROLES = ("owner", "admin", "editor", "auditor", "agent", "viewer")


def sentence(rng: random.Random, n: int) -> str:
    words = [WORDS[min(int(rng.paretovariate(1.2)) - 1, len(WORDS) - 1)] for _ in range(n)]
    if rng.random() < 0.05:
        words.append(rng.choice(RARE))
    return " ".join(words)


class Mix:
    """A deterministic stream of realistic events."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.conversations = 0
        self.users = [(f"usr_{i:04d}", ROLES[i % len(ROLES)]) for i in range(200)]

    def conversation(self) -> list[Event]:
        rng = self.rng
        self.conversations += 1
        conv = f"conv_{self.conversations:08d}"
        bot = f"bot_{rng.randrange(20):03d}"
        visitor = f"vis_{rng.randrange(50_000):06d}"
        common = {"chatbot_id": bot, "conversation_id": conv}
        visitor_actor = Actor("anonymous", visitor)
        out = [
            Event(
                "conversation.start",
                visitor_actor,
                Entity("conversation", conv),
                subject=visitor,
                attributes={**common, "channel": "widget", "gen_ai.conversation.id": conv},
                payload={"visitor_id": visitor, "ip": "203.0.113.7"},
            )
        ]
        for turn in range(rng.randint(1, 4)):
            msg, ans = f"msg_{conv}_{turn}", f"ans_{conv}_{turn}"
            out.append(
                Event(
                    "message.user",
                    visitor_actor,
                    Entity("message", msg),
                    subject=visitor,
                    attributes={**common, "message_id": msg},
                    payload={"text": sentence(rng, rng.randint(6, 25))},
                )
            )
            model = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "offline",
                "gen_ai.request.model": "offline-extractive-1",
                "gen_ai.usage.input_tokens": rng.randint(300, 1500),
                "gen_ai.usage.output_tokens": rng.randint(30, 300),
                "latency_ms": round(rng.uniform(5, 900), 3),
            }
            out.append(
                Event(
                    "message.retrieval",
                    Actor("system", "chatledger"),
                    Entity("message", msg),
                    subject=visitor,
                    attributes={**common, "hits": rng.randint(0, 5)},
                )
            )
            out.append(
                Event(
                    "model.call",
                    Actor("system", "chatledger"),
                    Entity("model_call", ans),
                    subject=visitor,
                    attributes={**common, **model, "message_id": ans},
                    payload={"messages": [{"role": "user", "content": sentence(rng, 40)}]},
                )
            )
            out.append(
                Event(
                    "message.answer",
                    Actor("system", "chatledger"),
                    Entity("message", ans),
                    subject=visitor,
                    attributes={**common, **model, "message_id": ans, "groundedness": 0.8},
                    payload={"text": sentence(rng, rng.randint(20, 60))},
                )
            )
            if rng.random() < 0.1:
                out.append(
                    Event(
                        "message.feedback",
                        visitor_actor,
                        Entity("message", ans),
                        subject=visitor,
                        attributes={**common, "rating": rng.choice(("positive", "negative"))},
                        payload={"comment": sentence(rng, 8)},
                    )
                )
            if rng.random() < 0.02:
                out.append(
                    Event(
                        "guard.injection_detected",
                        visitor_actor,
                        Entity("message", msg),
                        rng.choice(("blocked", "flagged")),
                        attributes={**common, "detector": "heuristic", "score": 0.9},
                    )
                )
        out.append(
            Event(
                "conversation.end",
                visitor_actor,
                Entity("conversation", conv),
                subject=visitor,
                attributes=common,
            )
        )
        return out

    def staff(self) -> list[Event]:
        rng = self.rng
        user, role = rng.choice(self.users)
        actor = Actor("user", user, role)
        kind = rng.random()
        if kind < 0.4:
            return [Event("auth.login", actor, Entity("user", user), attributes={"method": "pw"})]
        if kind < 0.5:
            return [
                Event(
                    "auth.login_failed",
                    Actor("anonymous", f"198.51.100.{rng.randrange(255)}"),
                    Entity("http_request", "POST /api/v1/auth/login"),
                    "denied",
                    attributes={"method": "password", "reason": "bad_password"},
                )
            ]
        if kind < 0.6:
            return [
                Event(
                    "guard.anomaly",
                    actor,
                    Entity("anomaly", f"burst:{user}"),
                    "flagged",
                    attributes={"kind": "burst", "severity": rng.choice(("low", "medium", "high"))},
                )
            ]
        if kind < 0.75:
            return [
                Event(
                    "document.upload",
                    actor,
                    Entity("document", f"doc_{rng.randrange(10_000):05d}"),
                    attributes={"chatbot_id": f"bot_{rng.randrange(20):03d}", "size": 2048},
                    payload={"name": "faq.pdf"},
                )
            ]
        if kind < 0.85:
            return [
                Event(
                    "chatbot.update",
                    actor,
                    Entity("chatbot", f"bot_{rng.randrange(20):03d}"),
                    attributes={"chatbot_id": f"bot_{rng.randrange(20):03d}", "fields": ["x"]},
                    payload={"before": {"t": 0.2}, "after": {"t": 0.3}},
                )
            ]
        if kind < 0.95:
            return [
                Event(
                    "conversation.view",
                    actor,
                    Entity("conversation", f"conv_{rng.randrange(1, self.conversations + 1):08d}"),
                )
            ]
        return [
            Event(
                "access.denied",
                actor,
                Entity("http_request", "GET /api/v1/audit/events"),
                "denied",
                attributes={"permission": "audit.read"},
            )
        ]

    def batch(self, size: int) -> list[Event]:
        out: list[Event] = []
        while len(out) < size:
            out += self.conversation() if self.rng.random() < 0.8 else self.staff()
        return out[:size]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def build(root: Path, total: int) -> Ledger:
    settings = Settings.load(root / "data")
    settings.publish_dirs = []
    settings.checkpoint_every = 1_000_000
    ledger = open_ledger(settings)
    mix = Mix()
    t0 = time.perf_counter()
    done = 0
    while done < total:
        n = min(BATCH, total - done)
        ledger.append_many(mix.batch(n))
        done += n
        if done % 100_000 == 0:
            rate = done / (time.perf_counter() - t0)
            print(f"  built {done:,} events ({rate:,.0f}/s)", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    print(f"ledger: {total:,} events appended in {elapsed:.1f} s ({total / elapsed:,.0f}/s)")
    return ledger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="reuse or keep the ledger in this folder")
    parser.add_argument("--exports-only", action="store_true", help="skip the search figures")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-search-"))
    reuse = args.keep is not None and (root / "data" / "chatledger.db").exists()
    try:
        if reuse:
            settings = Settings.load(root / "data")
            ledger = open_ledger(settings)
            print(f"ledger: reusing {ledger.size():,} events in {root}")
        else:
            root.mkdir(parents=True, exist_ok=True)
            ledger = build(root, args.events)
        run(ledger, args.queries, exports_only=args.exports_only)
        ledger.close()
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


def run(ledger: Ledger, queries: int, *, exports_only: bool = False) -> None:
    size = ledger.size()
    index = index_for(ledger)
    t0 = time.perf_counter()
    while not index.state().complete:
        index.catch_up(max_entries=50_000)
    elapsed = time.perf_counter() - t0
    texts = ledger.store.query("SELECT count(*) FROM audit_text")[0][0]
    print(
        f"audit index: {size:,} entries ({texts:,} texts) indexed in {elapsed:.1f} s "
        f"({size / max(elapsed, 1e-9):,.0f} entries/s)"
    )
    conn = ledger.store.read_connection()
    if not exports_only:
        run_searches(ledger, queries, conn)
    run_exports(ledger, conn)


def run_searches(ledger: Ledger, queries: int, conn: Any) -> None:
    size = ledger.size()
    rng = random.Random(11)
    convs = [r[0] for r in conn.execute(
        "SELECT conversation_id FROM ledger_entries WHERE conversation_id IS NOT NULL "
        "AND seq % 997 = 0"
    ).fetchall()]  # fmt: skip
    last_ts = ledger.entry(size - 1).ts
    day_ago = last_ts[:11] + "00:00:00Z"

    # Filtered queries, each beside one plain indexed SQL query doing the same job.
    filtered: list[tuple[str, Callable[[], dict[str, str]], str, Callable[[], tuple[Any, ...]]]] = [
        ("actor", lambda: {"actor": f"usr_{rng.randrange(200):04d}"},
         "actor_id = ?", lambda: (f"usr_{rng.randrange(200):04d}",)),
        ("action prefix guard.*", lambda: {"action": "guard.*"},
         "action IN ('guard.anomaly', 'guard.injection_detected')", lambda: ()),
        ("category+outcome", lambda: {"category": "security", "outcome": "denied"},
         "category = 'security' AND outcome = 'denied'", lambda: ()),
        ("conversation", lambda: {"conversation_id": rng.choice(convs)},
         "conversation_id = ?", lambda: (rng.choice(convs),)),
        ("chatbot+time", lambda: {"chatbot_id": f"bot_{rng.randrange(20):03d}", "start": day_ago},
         "chatbot_id = ? AND ts >= ?", lambda: (f"bot_{rng.randrange(20):03d}", day_ago)),
        ("role", lambda: {"role": rng.choice(ROLES)}, "", lambda: ()),
        ("severity", lambda: {"severity": "high"}, "", lambda: ()),
        ("entity", lambda: {"entity_type": "document",
                            "entity_id": f"doc_{rng.randrange(10_000):05d}"},
         "entity_type = 'document' AND entity_id = ?",
         lambda: (f"doc_{rng.randrange(10_000):05d}",)),
        ("outcome blocked", lambda: {"outcome": "blocked"}, "outcome = 'blocked'", lambda: ()),
        ("access, oldest first", lambda: {"category": "access"}, "category = 'access'", lambda: ()),
    ]  # fmt: skip
    print(f"\nfiltered search, {queries} queries per filter (ms)   p50    p95   max | baseline p95")
    all_p95: list[float] = []
    for name, make, sql, params in filtered:
        order = "oldest" if "oldest" in name else "newest"
        lat = timed(lambda m=make, o=order: search(ledger, Filters.parse(**m()), order=o), queries)  # type: ignore[misc]
        all_p95.append(pct(lat, 0.95))
        base = "-"
        if sql:
            direction = "ASC" if order == "oldest" else "DESC"
            q = (
                f"SELECT seq, body FROM ledger_entries WHERE {sql} "
                f"ORDER BY seq {direction} LIMIT 50"
            )
            blat = timed(lambda q=q, p=params: conn.execute(q, p()).fetchall(), queries)  # type: ignore[misc]
            base = f"{pct(blat, 0.95):7.2f}"
        print(f"  {name:<42} {pct(lat, 0.5):6.2f} {pct(lat, 0.95):6.2f} {max(lat):6.1f} | {base}")
    print(f"  worst filtered p95: {max(all_p95):.1f} ms (target <= 100 ms)")

    # Full-text queries beside a bare FTS5 MATCH (rowids only, no snippets, no checks).
    text_queries: list[tuple[str, Callable[[], dict[str, str]]]] = [
        ("common word", lambda: {"q": rng.choice(WORDS[:10])}),
        ("mid word", lambda: {"q": rng.choice(WORDS[20:60])}),
        ("rare word", lambda: {"q": rng.choice(RARE)}),
        ("two words", lambda: {"q": f"{rng.choice(WORDS[:30])} {rng.choice(WORDS[30:])}"}),
        ("phrase", lambda: {"q": f'"{rng.choice(WORDS[:5])} {rng.choice(WORDS[:5])}"'}),
        ("prefix", lambda: {"q": rng.choice(WORDS)[:4] + "*"}),
        ("word + chatbot", lambda: {"q": rng.choice(WORDS[:40]),
                                    "chatbot_id": f"bot_{rng.randrange(20):03d}"}),
    ]  # fmt: skip
    print(
        f"\nfull-text search, {queries} queries each (ms)        p50    p95   max | bare MATCH p95"
    )
    all_p95 = []
    for name, make in text_queries:
        lat = timed(lambda m=make: search(ledger, Filters.parse(**m())), queries)  # type: ignore[misc]
        all_p95.append(pct(lat, 0.95))

        def bare(m: Callable[[], dict[str, str]] = make) -> None:
            fts = to_fts_query(m()["q"])
            conn.execute(
                "SELECT rowid FROM audit_text WHERE audit_text MATCH ? ORDER BY rowid DESC "
                "LIMIT 50",
                (fts,),
            ).fetchall()

        blat = timed(bare, queries)
        print(
            f"  {name:<42} {pct(lat, 0.5):6.2f} {pct(lat, 0.95):6.2f} {max(lat):6.1f} | "
            f"{pct(blat, 0.95):7.2f}"
        )
    print(f"  worst full-text p95: {max(all_p95):.1f} ms (target <= 300 ms)")


def run_exports(ledger: Ledger, conn: Any) -> None:
    """Exports of everything, beside a raw scan of the bodies written as lines: in this
    process (1) and in one worker process per core (the default for a large export)."""
    size = ledger.size()
    print("\nexport of every event (written to /dev/null; target: 1,000,000 in <= 30 s)")
    with open(os.devnull, "wb") as sink:
        t0 = time.perf_counter()
        written = 0
        for start in range(0, size, 5000):
            rows = conn.execute(
                "SELECT body FROM ledger_entries WHERE seq >= ? AND seq < ?",
                (start, start + 5000),
            ).fetchall()
            chunk = b"\n".join(bytes(r[0]) for r in rows) + b"\n"
            written += len(chunk)
            sink.write(chunk)
        base = time.perf_counter() - t0
        print(f"  baseline raw body scan: {base:6.1f} s ({size / base:,.0f} events/s)")
        cpus = auto_workers()
        for workers in (1, cpus):
            for name in ("jsonl", "ocsf", "cef"):
                exporter = prepare_export(
                    ledger, Filters.parse(), get_format(name), FormatContext(origin=ledger.origin)
                )
                t0, c0, w0 = time.perf_counter(), time.process_time(), _children_cpu()
                written = 0
                for chunk in exporter.chunks(workers=workers):
                    written += len(chunk)
                    sink.write(chunk)
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
                print(
                    f"  {name:<6} {workers} process{'es' if workers > 1 else '  '}: "
                    f"{exporter.count:,} events in {elapsed:6.1f} s "
                    f"({exporter.count / elapsed:,.0f} events/s, {written / 1e6:,.0f} MB; "
                    f"CPU {cpu:.1f} s in this process, {_children_cpu() - w0:.1f} s in workers)"
                )


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


if __name__ == "__main__":
    main()
