"""Rate limits shared by several processes: the deployment, not each process, gets the limit."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from chatledger.config import Settings
from chatledger.errors import RateLimited
from chatledger.guard.ratelimit import RateLimit
from chatledger.guard.shared_limits import (
    SQLITE_FILE,
    Buckets,
    SharedRateLimiter,
    SqliteBuckets,
)
from chatledger.platform import Platform

LIMITS = {"ip": RateLimit(5, 3600.0), "visitor": RateLimit(2, 10.0)}
MakeBuckets = Callable[[], Buckets]


def allowed(limiter: SharedRateLimiter, kind: str, key: str, tries: int) -> int:
    granted = 0
    for _ in range(tries):
        try:
            limiter.check(kind, key)  # type: ignore[arg-type]
            granted += 1
        except RateLimited:
            pass
    return granted


def check_two_limiters_share_one_bucket(make: MakeBuckets) -> None:
    clock = [1000.0]
    first = SharedRateLimiter(make(), LIMITS, clock=lambda: clock[0])
    second = SharedRateLimiter(make(), LIMITS, clock=lambda: clock[0])
    assert [first.check("ip", "10.0.0.1"), second.check("ip", "10.0.0.1")] == [4, 3]
    assert allowed(first, "ip", "10.0.0.1", 2) + allowed(second, "ip", "10.0.0.1", 9) == 3
    with pytest.raises(RateLimited) as refused:
        second.check("ip", "10.0.0.1")
    assert refused.value.retry_after == pytest.approx(720.0, abs=0.01)
    assert first.remaining("ip", "10.0.0.1") == 0
    assert second.check("ip", "10.0.0.2") == 4  # other keys and kinds are untouched
    assert first.check("visitor", "10.0.0.1") == 1

    clock[0] += 5.0  # the visitor bucket refills 2 per 10 s: one token back, to the full 2
    assert [second.check("visitor", "10.0.0.1"), first.check("visitor", "10.0.0.1")] == [1, 0]
    assert len(first) == 3
    first.reset("ip", "10.0.0.1")
    assert second.remaining("ip", "10.0.0.1") == 5

    clock[0] += 10_000.0  # every bucket is full again: an idle row is swept
    first._idle_after = 3600.0
    for _ in range(1000):
        first.check("visitor", "sweeper")
        clock[0] += 10.0
    assert len(second) == 1
    first.close()
    second.close()


def shared_state_bytes(platform: Platform, data_dir: Path, table: str) -> bytes:
    """What the deployment's shared guard state holds: the SQLite file beside the database,
    or the keys of ``table`` on PostgreSQL."""
    url = getattr(platform.ledger.store, "url", None)
    if url is None:
        return b"".join(p.read_bytes() for p in data_dir.glob(f"{SQLITE_FILE}*"))
    with psycopg.connect(url) as conn:
        return "".join(k for (k,) in conn.execute(f"SELECT key FROM {table}")).encode()


def test_two_limiters_share_one_sqlite_bucket(tmp_path: Path) -> None:
    check_two_limiters_share_one_bucket(lambda: SqliteBuckets(tmp_path / SQLITE_FILE))


def _hammer(path: str, tries: int, out: multiprocessing.Queue[int]) -> None:
    limiter = SharedRateLimiter(SqliteBuckets(Path(path)), LIMITS)
    out.put(allowed(limiter, "ip", "203.0.113.9", tries))
    limiter.close()


def test_processes_share_the_limit(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[int] = context.Queue()
    workers = [
        context.Process(target=_hammer, args=(str(tmp_path / SQLITE_FILE), 40, out))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    granted = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert sum(granted) == 5  # not 5 per process


class Broken:
    def take(self, params: object) -> tuple[float, bool]:
        raise OSError("disk gone")

    def close(self) -> None:
        pass


def test_a_failing_store_falls_back_to_the_process_buckets() -> None:
    limiter = SharedRateLimiter(Broken(), LIMITS)  # type: ignore[arg-type]
    assert allowed(limiter, "ip", "10.0.0.1", 9) == 5


def test_platforms_on_one_data_directory_share_limits(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "data")
    settings.rate_limits = {"ip": [3, 3600]}
    one, two = Platform.open(settings), Platform.open(settings)
    try:
        granted = 0
        for platform in (one, two, one, two, one, two):
            try:
                platform.abuse.charge("ip", "198.51.100.7", None, "/api/v1/x", "198.51.100.7")
                granted += 1
            except RateLimited:
                pass
        assert granted == 3
        refusals = one.ledger.store.query(
            "SELECT COUNT(*) FROM ledger_entries WHERE action = 'guard.rate_limited'"
        )
        assert refusals[0][0] == 3  # every refusal is on the record, whichever process
    finally:
        one.close()
        two.close()
    stored = shared_state_bytes(one, tmp_path / "data", "rate_buckets")
    assert stored and b"198.51.100.7" not in stored  # buckets are kept under pseudonyms
