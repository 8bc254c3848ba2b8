"""Crash safety and concurrency: killed appenders lose no acknowledged event; concurrent
appenders (threads and processes) produce one valid linear log with no gaps or duplicates."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chatledger.config import Settings
from chatledger.ledger.service import Ledger
from chatledger.runtime import open_ledger
from tests.conftest import LedgerFactory, sample_event

ROOT = Path(__file__).resolve().parents[2]


def _start_appender(data_dir: Path, ack: Path, threads: int, tag: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ledger.appender", str(data_dir), str(ack), str(threads), tag],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    return proc


def _acknowledged(ack: Path) -> dict[int, str]:
    acked: dict[int, str] = {}
    for line in ack.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:  # a line cut by the kill is not an acknowledgement
            acked[int(parts[0])] = parts[1]
    return acked


def _entry_ids(ledger: Ledger) -> dict[int, str]:
    return {e.seq: e.id for e in ledger.entries(0, ledger.size())}


@pytest.mark.sqlite_only(
    reason="kills the SQLite writer; on PostgreSQL: tests/postgres/test_pg_concurrency.py"
)
def test_sigkill_loses_no_acknowledged_append(data_dir: Path, tmp_path: Path) -> None:
    Settings.load(data_dir)  # create the data directory and its settings once
    ack = tmp_path / "acks.txt"
    rng = random.Random(1234)
    kills = 0
    for round_ in range(22):
        proc = _start_appender(data_dir, ack, threads=3, tag=f"r{round_}")
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        kills += 1
        ledger = open_ledger(Settings.load(data_dir))
        try:
            ids = _entry_ids(ledger)
            acked = _acknowledged(ack)
            missing = {seq for seq in acked if ids.get(seq) != acked[seq]}
            assert not missing, f"round {round_}: acknowledged but lost: {sorted(missing)[:5]}"
            assert sorted(ids) == list(range(len(ids)))
            if round_ % 7 == 6 or round_ == 21:
                report = ledger.verify()
                assert report.ok, report.to_json()
        finally:
            ledger.close()
    assert kills >= 20
    assert len(_acknowledged(ack)) > 100, "the appenders should have made progress"


def test_concurrent_threads_make_one_linear_log(ledger: Ledger) -> None:
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            seqs: list[int] = []
            for i in range(40):
                if i % 3:
                    seqs.append(ledger.append(sample_event(w * 1000 + i)).seq)
                else:
                    batch = [sample_event(w * 1000 + i + j) for j in range(5)]
                    got = [r.seq for r in ledger.append_many(batch)]
                    assert got == list(range(got[0], got[0] + 5)), "a batch must stay contiguous"
                    seqs.extend(got)
            results[w] = seqs
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    every = sorted(s for seqs in results.values() for s in seqs)
    assert every == list(range(ledger.size()))
    assert ledger.verify().ok


@pytest.mark.sqlite_only(
    reason="processes sharing the SQLite file; on PostgreSQL: tests/postgres/test_pg_concurrency.py"
)
def test_concurrent_processes_make_one_linear_log(
    make_ledger: LedgerFactory, data_dir: Path, tmp_path: Path
) -> None:
    ledger = make_ledger()
    ledger.append(sample_event(0))
    procs = []
    acks = []
    for p in range(3):
        ack = tmp_path / f"acks-{p}.txt"
        acks.append(ack)
        procs.append(_start_appender(data_dir, ack, threads=2, tag=f"p{p}"))
    stop = time.monotonic() + 2.0
    in_process: list[int] = []
    while time.monotonic() < stop:  # this process appends at the same time
        in_process.extend(r.seq for r in ledger.append_many([sample_event(1), sample_event(2)]))
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    ledger.close()
    reopened = make_ledger()
    ids = _entry_ids(reopened)
    assert sorted(ids) == list(range(len(ids)))
    seen: dict[int, str] = {}
    for ack in acks:
        for seq, id_ in _acknowledged(ack).items():
            assert seq not in seen, f"seq {seq} acknowledged twice"
            assert ids[seq] == id_
            seen[seq] = id_
    assert not set(in_process) & set(seen)
    assert len(seen) > 50
    report = reopened.verify()
    assert report.ok, report.to_json()
    assert os.path.exists(data_dir / "chatledger.db")
