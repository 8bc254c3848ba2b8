"""Anomaly counts shared by several processes: an attack spread over the server's workers is
counted, and reported, once for the deployment."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

from chatledger.config import Settings
from chatledger.guard.anomaly import (
    AnomalyDetector,
    AnomalyThresholds,
    Finding,
    FindingKind,
    Ladder,
    Severity,
)
from chatledger.guard.shared_anomaly import SWEEP_EVERY, SharedAnomalyCounters
from chatledger.guard.shared_state import SQLITE_FILE, SharedDb, SqliteShared
from chatledger.platform import Platform
from tests.guard.test_shared_limits import shared_state_bytes

MakeDb = Callable[[], SharedDb]
LADDER = Ladder(window=60.0, low=4, medium=8, high=12, critical=40)


def check_two_detectors_share_counts(make: MakeDb) -> None:
    """Two detectors (two processes' worth) on one shared store."""
    clock = [1000.0]
    thresholds = AnomalyThresholds(burst=LADDER, enumeration=LADDER)
    first, second = (
        AnomalyDetector(thresholds, shared=SharedAnomalyCounters(make()), clock=lambda: clock[0])
        for _ in range(2)
    )
    found: list[tuple[str, Finding]] = []
    for i in range(12):  # alternate: each process alone sees only 6 requests
        detector, name = (first, "first") if i % 2 == 0 else (second, "second")
        found += [(name, f) for f in detector.record_request("203.0.113.9")]
    levels = [f.severity for _, f in found]
    assert levels == [Severity.LOW, Severity.MEDIUM, Severity.HIGH]  # each reported once
    assert {name for name, _ in found} == {"second"}  # whichever process reached it
    assert found[-1][1].details == {"count": 12, "window_seconds": 60.0, "threshold": 12}

    # enumeration counts distinct documents across processes; a repeat is not a new one
    for i in range(3):
        assert first.record_access("key-1", "document", f"doc-{i}") == []
        assert second.record_access("key-1", "document", f"doc-{i}") == []
    (low,) = second.record_access("key-1", "document", "doc-3")
    assert low.kind is FindingKind.ENUMERATION and low.details["count"] == 4

    clock[0] += 61.0  # the window has passed: counting starts again
    assert first.record_request("203.0.113.9") == []
    assert first.tracked_keys() == second.tracked_keys() == 2
    first.close()
    second.close()


def test_two_detectors_share_one_sqlite_file(tmp_path: Path) -> None:
    check_two_detectors_share_counts(lambda: SqliteShared(tmp_path / SQLITE_FILE))


def _fail_logins(path: str, tries: int, out: multiprocessing.Queue[list[str]]) -> None:
    detector = AnomalyDetector(shared=SharedAnomalyCounters(SqliteShared(Path(path))))
    found = [f.severity.value for _ in range(tries) for f in detector.record_failed_login("x")]
    out.put(found)
    detector.close()


def test_processes_report_each_level_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[str]] = context.Queue()
    workers = [
        context.Process(target=_fail_logins, args=(str(tmp_path / SQLITE_FILE), 10, out))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    found = [level for _ in workers for level in out.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)
    # 30 failed logins in all (5 / 10 / 20 / 50 are the default steps), 10 per process: a
    # process counting alone would report "medium" at most, and each process would report it
    assert sorted(found) == ["high", "low", "medium"]


def test_a_failing_store_falls_back_to_counting_here(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    broken = SqliteShared(tmp_path / "a-directory")  # cannot be opened as a database
    detector = AnomalyDetector(
        AnomalyThresholds(burst=LADDER), shared=SharedAnomalyCounters(broken)
    )
    found = [f for i in range(4) for f in detector.record_request("k", now=float(i))]
    assert [f.severity for f in found] == [Severity.LOW]
    assert detector.tracked_keys() == 1


def test_old_observations_are_swept(tmp_path: Path) -> None:
    counters = SharedAnomalyCounters(SqliteShared(tmp_path / SQLITE_FILE))
    detector = AnomalyDetector(AnomalyThresholds(burst=LADDER), shared=counters)
    for i in range(SWEEP_EVERY):
        detector.record_request(f"key-{i}", now=float(i))
    # observations older than the 60 s window are gone, newer ones stay
    assert detector.tracked_keys() == 61
    detector.close()


def test_platforms_on_one_data_directory_share_anomaly_counts(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "data")
    one, two = Platform.open(settings), Platform.open(settings)
    try:
        for platform in (one, two, one, two, one):  # 3 + 2: each below the 5 of "low"
            platform.abuse.observe_failed_login("198.51.100.7")
        rows = one.ledger.store.query(
            "SELECT COUNT(*) FROM ledger_entries WHERE action = 'guard.anomaly'"
        )
        assert rows[0][0] == 1
    finally:
        one.close()
        two.close()
    stored = shared_state_bytes(one, tmp_path / "data", "anomaly_marks")
    assert stored and b"198.51.100.7" not in stored  # counted under pseudonyms
