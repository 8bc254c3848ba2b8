"""PostgreSQL ledger benchmark: durable append throughput beside baselines from the same run.

    python benchmarks/bench_postgres.py [--events 20000] [--single 4000]

Starts a private PostgreSQL 15 server with fsync and full_page_writes on (or uses the
superuser URL in CHATLEDGER_BENCH_POSTGRES_URL), connects the ledger as the application role
(SELECT/INSERT only, triggers on) and measures, with ~1 KB events and a 500-byte payload:

1. plain batched INSERT of the same serialized rows (seq, body, payload ciphertext), 1000 rows
   per transaction, and one COPY of them: the baselines;
2. ledger appends through the API with 1, 4 and 16 concurrent appender threads, each appending
   batches of 20 events, and one event at a time (acknowledged means committed with
   synchronous_commit on);
3. 16 appenders spread over 4 processes (4 threads each), which take turns through the
   advisory lock and re-read the head each time another process appended.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from benchmarks.bench_ledger import make_event  # noqa: E402 - the SQLite bench's ~1 KB events

from chatledger.config import Settings  # noqa: E402
from chatledger.ledger.service import Ledger  # noqa: E402
from chatledger.runtime import open_ledger  # noqa: E402
from chatledger.store.postgres_schema import prepare_schema, setup_roles  # noqa: E402

APP_ROLE, APP_PASSWORD = "chatledger_bench_app", "chatledger-bench-only"
BATCH_ROWS = 1000


def open_fresh(root: Path, url: str) -> Ledger:
    settings = Settings.load(root, database_url=url)
    settings.publish_dirs = []
    settings.checkpoint_every = 100_000
    return open_ledger(settings)


def appenders_run(ledger: Ledger, appenders: int, total: int, batch: int, base: int = 0) -> float:
    per = total // appenders

    def work(w: int) -> None:
        first = base + w * per
        for start in range(0, per, batch):
            n = min(batch, per - start)
            ledger.append_many([make_event(first + start + j) for j in range(n)])

    threads = [threading.Thread(target=work, args=(w,)) for w in range(appenders)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (per * appenders) / (time.perf_counter() - t0)


def baselines(admin_url: str, rows: list[tuple[int, bytes, bytes]]) -> tuple[float, float]:
    """Plain batched INSERT and COPY of the same rows, durable, into plain tables."""
    with psycopg.connect(admin_url) as conn:
        conn.execute("SET synchronous_commit = on")
        for table in ("plain_insert", "plain_copy"):
            conn.execute(
                f"CREATE TABLE {table} (seq bigint PRIMARY KEY, body bytea NOT NULL, "
                "payload bytea NOT NULL)"
            )
        conn.commit()
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            for start in range(0, len(rows), BATCH_ROWS):
                cur.executemany(
                    "INSERT INTO plain_insert VALUES (%s, %s, %s)", rows[start : start + BATCH_ROWS]
                )
                conn.commit()
        insert = len(rows) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY plain_copy FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        copied = len(rows) / (time.perf_counter() - t0)
    return insert, copied


def child(url: str, data_dir: str, threads: int, per_thread: int, batch: int, base: int) -> None:
    """One appender process: wait for 'go' on stdin, append, report how many."""
    ledger = open_fresh(Path(data_dir), url)
    print("ready", flush=True)
    sys.stdin.readline()
    appenders_run(ledger, threads, threads * per_thread, batch, base)
    ledger.close()
    print("done", flush=True)


def processes_run(
    url: str, data_dir: Path, procs: int, threads: int, total: int, batch: int, base: int
) -> float:
    per_thread = total // (procs * threads)
    logs = [data_dir / f"child-{p}.log" for p in range(procs)]
    stack = contextlib.ExitStack()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                url,
                str(data_dir),
                str(threads),
                str(per_thread),
                str(batch),
                str(base + p * threads * per_thread),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stack.enter_context(logs[p].open("w")),
            text=True,
        )
        for p in range(procs)
    ]

    def expect(child: subprocess.Popen[str], word: str, log: Path) -> None:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if line != word:
            raise RuntimeError(f"appender process said {line!r}, not {word!r}: {log.read_text()}")

    try:
        for c, log in zip(children, logs, strict=True):
            expect(c, "ready", log)
        t0 = time.perf_counter()
        for c in children:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        for c, log in zip(children, logs, strict=True):
            expect(c, "done", log)
        elapsed = time.perf_counter() - t0
    finally:
        for c in children:
            if c.poll() is None and c.stdin is not None and not c.stdin.closed:
                c.stdin.close()
            try:
                c.wait(timeout=60)
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()
            if c.stdout is not None:
                c.stdout.close()
        stack.close()
    return per_thread * procs * threads / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000, help="events per batched run")
    parser.add_argument("--single", type=int, default=4_000, help="events per one-by-one run")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, data_dir, threads, per_thread, batch, base = args.child
        child(url, data_dir, int(threads), int(per_thread), int(batch), int(base))
        return

    from tests.pg_server import start_server

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out

    external = os.environ.get("CHATLEDGER_BENCH_POSTGRES_URL")
    if external:
        os.environ["CHATLEDGER_TEST_POSTGRES_URL"] = external
    server = start_server(durable=True)
    try:
        dbname = server.create_database("chatledger_bench")
        setup_roles(server.url(dbname), APP_ROLE, APP_PASSWORD, owner_role="chatledger_bench_owner")
        with psycopg.connect(server.admin_url) as conn:
            settings: dict[str, str] = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method')"
                ).fetchall()
            )
        print(
            f"ChatLedger on PostgreSQL ({args.events} events of ~1 KB, 500-byte payload; "
            f"server: {', '.join(f'{k}={v}' for k, v in sorted(settings.items()))})"
        )
        run(server, dbname, args.events, args.single)
    finally:
        server.stop()


def run(server: Any, dbname: str, events: int, single: int) -> None:
    counter = iter(range(1, 1000))

    def fresh_url() -> str:
        schema = f"b{next(counter)}"
        with psycopg.connect(server.url(dbname)) as conn:
            prepare_schema(conn, APP_ROLE, owner_role="chatledger_bench_owner", schema=schema)
        return str(server.url(dbname, user=APP_ROLE, password=APP_PASSWORD, search_path=schema))

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        # The rows the baselines write: exactly what a ledger run stored.
        ledger = open_fresh(root / "source", fresh_url())
        appenders_run(ledger, 16, events, 20)
        payloads = {p.seq: p.ciphertext for p in ledger.store.payloads(0, events)}
        rows = [(e.seq, e.body, payloads[e.seq]) for e in ledger.store.entries(0, events)]
        ledger.close()
        insert, copied = baselines(server.url(dbname, search_path="b1"), rows)
        print(f"baseline: plain batched INSERT ({BATCH_ROWS} rows/txn): {insert:10,.0f} rows/s")
        print(f"baseline: COPY of the same rows (one txn):       {copied:10,.0f} rows/s")

        def line(label: str, rate: float) -> None:
            print(
                f"{label:<44} {rate:10,.0f} events/s | {rate / insert:6.1%} of INSERT, "
                f"{rate / copied:6.1%} of COPY"
            )

        for appenders in (1, 4, 16):
            ledger = open_fresh(root / f"t{appenders}", fresh_url())
            line(
                f"ledger, {appenders:>2} threads x batches of 20",
                appenders_run(ledger, appenders, events, 20),
            )
            ledger.close()
        for appenders in (1, 4, 16):
            ledger = open_fresh(root / f"s{appenders}", fresh_url())
            line(
                f"ledger, {appenders:>2} threads x single events",
                appenders_run(ledger, appenders, single, 1),
            )
            ledger.close()
        for batch, total in ((20, events), (1, single)):
            url = fresh_url()
            data = root / f"p{batch}"
            open_fresh(data, url).close()  # keys and settings exist before the children start
            rate = processes_run(url, data, 4, 4, total, batch, 0)
            label = "batches of 20" if batch > 1 else "single events"
            line(f"ledger, 4 processes x 4 threads x {label}", rate)
            check = open_fresh(data, url)
            report = check.verify()
            assert report.ok, report.to_json()
            assert report.size == total // 16 * 16
            check.close()


if __name__ == "__main__":
    main()
