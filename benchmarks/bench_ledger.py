"""Ledger benchmark: each figure beside a baseline measured in the same run.

    python benchmarks/bench_ledger.py [--events 200000] [--proof-size 1000000]

Figures:
1. durable append throughput, concurrent appenders + group commit, ~1 KB events with a
   500-byte payload, beside a plain batched SQLite INSERT of the same serialized rows;
2. single-event append latency (durable), p50 / p99;
3. full verification speed, beside raw hashlib SHA-256 over the same entry bytes;
4. inclusion and consistency proof time on a ledger of --proof-size entries;
5. bytes on disk per event;
6. bounds, from the same rows: the ledger's storage layout alone (its stored rows inserted
   again into its own tables and indexes, nothing computed) and the per-event cryptography
   alone (canonical JSON, SHA-256 leaf and node, HMACs, AES-GCM, each one direct call), and
   for verification the bare read + hash + parse + MAC of every entry. No implementation
   that keeps this layout and calls these primitives from Python once per event can be
   faster than these; they show how far a target is from what the platform allows.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatledger.config import Settings
from chatledger.events import Actor, Entity, Event
from chatledger.ledger import merkle
from chatledger.ledger.service import Ledger
from chatledger.runtime import open_ledger

PAYLOAD_TEXT = "x" * 470  # with its key and JSON framing the payload is ~500 bytes


def make_event(i: int) -> Event:
    return Event(
        "message.answer",
        Actor("user", f"user-{i % 97}", "agent"),
        Entity("message", f"msg-{i:012d}"),
        subject=f"visitor-{i % 1000}",
        attributes={
            "chatbot_id": "bot-0001",
            "conversation_id": f"conv-{i // 10:010d}",
            "gen_ai.request.model": "offline-extractive-1",
            "gen_ai.usage.input_tokens": 812,
            "gen_ai.usage.output_tokens": 96,
            "latency_ms": 42,
            "retrieved_chunks": 4,
        },
        payload={"text": PAYLOAD_TEXT + f"{i:08d}"},
    )


def open_fresh(root: Path, name: str, **overrides: object) -> Ledger:
    settings = Settings.load(root / name)
    settings.publish_dirs = []
    for key, value in overrides.items():
        setattr(settings, key, value)
    return open_ledger(settings)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_throughput(root: Path, total: int, appenders: int, batch: int) -> tuple[float, Ledger]:
    ledger = open_fresh(root, f"tp-{appenders}-{batch}", checkpoint_every=100_000)
    per = total // appenders

    def work(w: int) -> None:
        base = w * per
        for start in range(0, per, batch):
            ledger.append_many([make_event(base + start + j) for j in range(batch)])

    threads = [threading.Thread(target=work, args=(w,)) for w in range(appenders)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return (per * appenders) / elapsed, ledger


def bench_baseline_insert(root: Path, ledger: Ledger, count: int) -> float:
    """Plain batched INSERT of the same serialized rows (bodies + payload ciphertexts)."""
    entries = list(ledger.store.entries(0, count))
    payloads = {p.seq: p for p in ledger.store.payloads(0, count)}
    path = root / f"baseline-{count}-{time.monotonic_ns()}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE rows (seq INTEGER PRIMARY KEY, body BLOB, payload BLOB)")
    rows = [(e.seq, e.body, payloads[e.seq].ciphertext) for e in entries]
    t0 = time.perf_counter()
    for start in range(0, len(rows), 1000):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO rows VALUES (?,?,?)", rows[start : start + 1000])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(rows) / elapsed


_ENTRY_COLUMNS = (
    "seq, ts, category, action, actor_id, entity_type, entity_id, outcome, subject, "
    "chatbot_id, conversation_id, body, leaf_hash, mac"
)


def bench_bounds(root: Path, ledger: Ledger, count: int) -> dict[str, float]:
    """Events per second that the layout alone and the cryptography alone allow (see 6.)."""
    source = sqlite3.connect(ledger.store.path)  # type: ignore[attr-defined]
    entries = source.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries WHERE seq < ? ORDER BY seq", (count,)
    ).fetchall()
    nodes = source.execute("SELECT level, idx, hash FROM ledger_nodes").fetchall()
    payloads = source.execute(
        "SELECT seq, key_ref, nonce, ciphertext FROM ledger_payloads WHERE seq < ? ORDER BY seq",
        (count,),
    ).fetchall()
    source.close()
    count = len(entries)
    nodes_by_batch: dict[int, list[tuple[int, int, bytes]]] = {}
    for level, idx, digest in nodes:
        last_leaf = ((idx + 1) << level) - 1
        if last_leaf < count:
            nodes_by_batch.setdefault(last_leaf // 1000, []).append((level, idx, digest))

    # The layout: the same rows into a fresh ledger database (same tables, same indexes).
    fresh = open_fresh(root, f"layout-{time.monotonic_ns()}")
    path = fresh.store.path  # type: ignore[attr-defined]
    fresh.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")
    t0 = time.perf_counter()
    for start in range(0, count, 1000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) VALUES ({','.join('?' * 14)})",
            entries[start : start + 1000],
        )
        conn.executemany(
            "INSERT INTO ledger_nodes VALUES (?,?,?)", nodes_by_batch.get(start // 1000, [])
        )
        conn.executemany(
            "INSERT INTO ledger_payloads VALUES (?,?,?,?)", payloads[start : start + 1000]
        )
        conn.execute("COMMIT")
    layout = count / (time.perf_counter() - t0)
    conn.close()

    # The cryptography: what every event needs, one direct call each, nothing else.
    parsed = [orjson.loads(row[11]) for row in entries]
    plain = [os.urandom(len(p[3]) - 16) for p in payloads]
    aead, key, sha256 = AESGCM(os.urandom(32)), os.urandom(32), hashlib.sha256
    t0 = time.perf_counter()
    prev = b"\0" * 32
    for entry, text in zip(parsed, plain, strict=False):
        digest = hmac.digest(text[:16], text[16:], "sha256")
        body = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
        leaf = sha256(b"\0" + body).digest()
        sha256(b"\1" + prev + leaf).digest()
        hmac.digest(key, leaf, "sha256")
        aead.encrypt(os.urandom(12), text, digest)
        prev = leaf
    crypto = len(parsed) / (time.perf_counter() - t0)
    del parsed

    # Verification's bare minimum: read every entry, hash it, parse it, check its MAC.
    conn = sqlite3.connect(ledger.store.path)  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for start in range(0, count, 5000):
        rows = conn.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries WHERE seq >= ? AND seq < ? ORDER BY seq",
            (start, start + 5000),
        ).fetchall()
        for row in rows:
            sha256(b"\0" + row[11]).digest()
            orjson.loads(row[11])
            hmac.digest(key, row[12], "sha256")
    reading = count / (time.perf_counter() - t0)
    conn.close()
    return {"layout": layout, "crypto": crypto, "verify_floor": reading}


def bench_latency(root: Path, count: int) -> tuple[list[float], list[float]]:
    ledger = open_fresh(root, "latency")
    lat = []
    for i in range(count):
        t0 = time.perf_counter()
        ledger.append(make_event(i))
        lat.append((time.perf_counter() - t0) * 1000)
    ledger.close()
    # Baseline: one plain durable INSERT + COMMIT per row.
    conn = sqlite3.connect(root / "latency-baseline.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE rows (seq INTEGER PRIMARY KEY, body BLOB)")
    base = []
    blob = os.urandom(1000)
    for i in range(count):
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute("INSERT INTO rows VALUES (?, ?)", (i, blob))
        conn.execute("COMMIT")
        base.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return lat, base


def bench_verify(ledger: Ledger) -> dict[str, float]:
    """Entries per second: full and structure-only (no MACs, no payloads), in this process
    and in worker processes (one per CPU, forced on however small the ledger), beside raw
    SHA-256 of the same bytes."""
    from chatledger.ledger.verify import PARALLEL_MIN, Tuning, verify_store

    size = ledger.size()
    bodies = [e.body for e in ledger.store.entries(0, size)]
    t0 = time.perf_counter()
    for body in bodies:
        hashlib.sha256(b"\x00" + body).digest()
    rates = {"raw": size / (time.perf_counter() - t0), "parallel_min": PARALLEL_MIN}
    forced = Tuning(parallel_min=0)
    for name, jobs in (("serial", 1), ("parallel", 0)):
        t0 = time.perf_counter()
        report = ledger.verify(jobs=jobs, tuning=forced)
        rates[f"{name} full"] = size / (time.perf_counter() - t0)
        assert report.ok, report.to_json()
        t0 = time.perf_counter()
        verify_store(
            ledger.store,
            ledger.verifier,
            ledger.origin,
            check_payloads=False,
            jobs=jobs,
            tuning=forced,
        )
        rates[f"{name} structure"] = size / (time.perf_counter() - t0)
    return rates


def bench_proofs(ledger: Ledger, samples: int = 300) -> tuple[float, float, float]:
    size = ledger.size()
    rng = random.Random(7)
    inc, cons, naive = [], [], []
    for _ in range(samples):
        seq = rng.randrange(size)
        t0 = time.perf_counter()
        ledger.prove(seq, tree_size=size)
        inc.append((time.perf_counter() - t0) * 1000)
        old = rng.randrange(1, size)
        t0 = time.perf_counter()
        ledger.prove_consistency(old, size)
        cons.append((time.perf_counter() - t0) * 1000)
    # Baseline: one indexed point read of a stored node (the unit a proof is made of).
    for _ in range(samples):
        t0 = time.perf_counter()
        ledger.store.fetch_nodes([(0, rng.randrange(size))])
        naive.append((time.perf_counter() - t0) * 1000)
    return statistics.median(inc), statistics.median(cons), statistics.median(naive)


def fill(ledger: Ledger, count: int) -> None:
    done = ledger.size()
    while done < count:
        n = min(2000, count - done)
        ledger.append_many([make_event(done + j) for j in range(n)])
        done += n


def db_bytes(ledger: Ledger) -> int:
    path = Path(ledger.store.path)  # type: ignore[attr-defined]
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--proof-size", type=int, default=1_000_000)
    parser.add_argument("--latency-samples", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        print(f"ChatLedger ledger benchmark ({args.events} events of ~1 KB, 500-byte payload)")
        for appenders, batch in ((8, 100), (16, 20), (8, 1)):
            total = args.events if batch > 1 else min(args.events, 20_000)
            rate, ledger = bench_throughput(root, total, appenders, batch)
            base = bench_baseline_insert(root, ledger, ledger.size())
            size = ledger.size()
            per_event = db_bytes(ledger) / size
            print(
                f"append, {appenders} appenders x batches of {batch:>3}: {rate:10,.0f} events/s"
                f" | plain batched INSERT of the same rows: {base:10,.0f} rows/s"
                f" | ratio {rate / base:6.1%}"
            )
            if batch == 100:
                ledger.checkpoint()
                rates = bench_verify(ledger)
                print(
                    f"verify ({size} entries, {os.cpu_count()} CPUs), events/s: full "
                    f"{rates['serial full']:,.0f} in one process, "
                    f"{rates['parallel full']:,.0f} in workers (forced: by default only from "
                    f"{rates['parallel_min']:,.0f} entries, start-up included); structure only "
                    f"{rates['serial structure']:,.0f} / {rates['parallel structure']:,.0f}"
                    f" | raw SHA-256 of the same bytes {rates['raw']:,.0f}/s"
                )
                print(f"bytes on disk per event (entry, nodes, payload, indexes): {per_event:,.0f}")
                bounds = bench_bounds(root, ledger, size)
                serial = 1 / (1 / bounds["layout"] + 1 / bounds["crypto"])
                print(
                    f"bounds from the same rows: layout alone (rows re-inserted into the "
                    f"ledger's tables and indexes) {bounds['layout']:,.0f}/s = "
                    f"{bounds['layout'] / base:.1%} of INSERT; cryptography alone "
                    f"{bounds['crypto']:,.0f}/s; both in one thread {serial:,.0f}/s = "
                    f"{serial / base:.1%} | verification floor (read + SHA-256 + parse + MAC, "
                    f"one process) {bounds['verify_floor']:,.0f}/s"
                )
            ledger.close()
        lat, base_lat = bench_latency(root, args.latency_samples)
        print(
            f"single append latency (durable): p50 {pct(lat, 0.5):.2f} ms, "
            f"p99 {pct(lat, 0.99):.2f} ms | plain INSERT+COMMIT p50 {pct(base_lat, 0.5):.2f} ms, "
            f"p99 {pct(base_lat, 0.99):.2f} ms"
        )
        big = open_fresh(root, "proofs", checkpoint_every=10**7)
        t0 = time.perf_counter()
        fill(big, args.proof_size)
        fill_rate = args.proof_size / (time.perf_counter() - t0)
        inc, cons, point = bench_proofs(big)
        print(
            f"proofs at {big.size():,} entries (filled at {fill_rate:,.0f} events/s): inclusion "
            f"{inc:.3f} ms, consistency {cons:.3f} ms (median) | one indexed node read "
            f"{point:.3f} ms"
        )
        per_event = db_bytes(big) / big.size()
        print(f"bytes on disk per event at {big.size():,} entries: {per_event:,.0f}")
        assert merkle.tree_root(big.size(), big.store.fetch_nodes) == big.root()
        big.close()


if __name__ == "__main__":
    main()
