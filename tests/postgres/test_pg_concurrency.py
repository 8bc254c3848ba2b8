"""Concurrency and crash safety on PostgreSQL: several processes append to one log at once
and produce one valid linear log (no gaps, no duplicates); a killed appender loses nothing
it had acknowledged."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chatledger.ledger.service import Ledger
from tests.conftest import LedgerFactory, sample_event
from tests.ledger.test_faults import test_concurrent_threads_make_one_linear_log

pytestmark = pytest.mark.postgres

__all__ = ["test_concurrent_threads_make_one_linear_log"]

ROOT = Path(__file__).resolve().parents[2]


Spawn = Callable[[Path, str, list[Path], int, str], list[subprocess.Popen[str]]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start appender processes; whatever is still running at the end is killed and reaped."""
    started: list[subprocess.Popen[str]] = []

    def start(
        data_dir: Path, url: str, acks: list[Path], threads: int, tag: str
    ) -> list[subprocess.Popen[str]]:
        """One appender per ack file, all at once; returns once each is appending."""
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.postgres.appender",
                    str(data_dir),
                    url,
                    str(ack),
                    str(threads),
                    f"{tag}{n}",
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n, ack in enumerate(acks)
        ]
        started.extend(procs)
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                _, err = proc.communicate(timeout=60)
                pytest.fail(f"the appender did not start: {err}")
        return procs

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def _acknowledged(ack: Path) -> dict[int, str]:
    acked: dict[int, str] = {}
    if not ack.exists():
        return acked
    for line in ack.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:  # a line cut by a kill is not an acknowledgement
            acked[int(parts[0])] = parts[1]
    return acked


def _entry_ids(ledger: Ledger) -> dict[int, str]:
    return {e.seq: e.id for e in ledger.entries(0, ledger.size())}


def _until_each_acked(acks: list[Path], at_least: int, then: Callable[[], object]) -> None:
    """Call ``then`` repeatedly for a second, and on until every appender acknowledged
    ``at_least`` appends (a loaded machine starts them slowly), for at most 30 s."""
    start = time.monotonic()
    while time.monotonic() - start < 30:
        then()
        elapsed = time.monotonic() - start
        if elapsed > 1.0 and all(len(_acknowledged(a)) >= at_least for a in acks):
            return


def test_concurrent_processes_make_one_linear_log(
    make_ledger: LedgerFactory, data_dir: Path, pg_url: str, tmp_path: Path, spawn: Spawn
) -> None:
    ledger = make_ledger()
    ledger.append(sample_event(0))
    acks = [tmp_path / f"acks-{p}.txt" for p in range(3)]
    procs = spawn(data_dir, pg_url, acks, 2, "p")
    in_process: list[int] = []

    def append_here() -> None:  # this process appends at the same time
        in_process.extend(r.seq for r in ledger.append_many([sample_event(1), sample_event(2)]))

    _until_each_acked(acks, 10, append_here)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    ids = _entry_ids(ledger)
    assert sorted(ids) == list(range(len(ids))), "the log must have no gaps"
    seen: dict[int, str] = {}
    for ack in acks:
        for seq, id_ in _acknowledged(ack).items():
            assert seq not in seen, f"seq {seq} acknowledged twice"
            assert ids[seq] == id_
            seen[seq] = id_
    assert not set(in_process) & set(seen)
    assert len(seen) + len(in_process) + 1 == len(ids), "every entry has exactly one writer"
    assert all(len(_acknowledged(ack)) >= 10 for ack in acks), "every process made progress"
    report = ledger.verify()
    assert report.ok, report.to_json()


def test_sigkill_loses_no_acknowledged_append(
    make_ledger: LedgerFactory, data_dir: Path, pg_url: str, tmp_path: Path, spawn: Spawn
) -> None:
    """Three appenders run together and are killed one by one, mid-flight."""
    make_ledger().close()  # the data directory's keys exist before the children start
    acks = [tmp_path / f"acks-{p}.txt" for p in range(3)]
    procs = spawn(data_dir, pg_url, acks, 3, "k")
    for n, proc in enumerate(procs):
        _until_each_acked(acks[n:], 5 * (n + 1), lambda: time.sleep(0.05))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    ledger = make_ledger()
    ids = _entry_ids(ledger)
    acked = [_acknowledged(ack) for ack in acks]
    assert all(len(a) >= 5 for a in acked), "every appender should have made progress"
    for each in acked:
        lost = {seq for seq, id_ in each.items() if ids.get(seq) != id_}
        assert not lost, f"acknowledged but lost: {sorted(lost)[:5]}"
    assert sorted(ids) == list(range(len(ids)))
    report = ledger.verify()
    assert report.ok, report.to_json()
