"""Token-bucket rate limits with an injected clock."""

from __future__ import annotations

import threading

import pytest

from chatledger.errors import InvalidInput, RateLimited
from chatledger.guard.ratelimit import DEFAULT_LIMITS, RateLimit, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_allows_up_to_the_limit_then_refuses() -> None:
    clock = Clock()
    limiter = RateLimiter({"session": RateLimit(3, 60.0)}, clock=clock)
    assert [limiter.check("session", "s1") for _ in range(3)] == [2, 1, 0]
    with pytest.raises(RateLimited) as info:
        limiter.check("session", "s1")
    assert info.value.retry_after == pytest.approx(20.0)  # one token every 20 s
    assert info.value.status == 429
    assert info.value.details["kind"] == "session"
    assert "s1" not in str(info.value.details)  # keys can be personal data (IPs)


def test_tokens_refill_with_time() -> None:
    clock = Clock()
    limiter = RateLimiter({"ip": RateLimit(2, 10.0)}, clock=clock)
    limiter.check("ip", "10.0.0.1")
    limiter.check("ip", "10.0.0.1")
    clock.t += 5.0  # one token back
    assert limiter.check("ip", "10.0.0.1") == 0
    with pytest.raises(RateLimited):
        limiter.check("ip", "10.0.0.1")
    clock.t += 100.0  # refills to the burst size, not beyond
    assert limiter.remaining("ip", "10.0.0.1") == 2


def test_now_argument_overrides_the_clock() -> None:
    limiter = RateLimiter({"api_key": RateLimit(1, 1.0)}, clock=lambda: 0.0)
    limiter.check("api_key", "k", now=50.0)
    with pytest.raises(RateLimited):
        limiter.check("api_key", "k", now=50.5)
    assert limiter.check("api_key", "k", now=51.0) == 0


def test_keys_and_kinds_are_independent() -> None:
    limiter = RateLimiter({"visitor": RateLimit(1, 60.0), "ip": RateLimit(1, 60.0)})
    limiter.check("visitor", "a", now=0.0)
    limiter.check("visitor", "b", now=0.0)
    limiter.check("ip", "a", now=0.0)
    with pytest.raises(RateLimited):
        limiter.check("visitor", "a", now=1.0)


def test_burst_larger_than_rate() -> None:
    limiter = RateLimiter({"ip": RateLimit(60, 60.0, burst=5)})
    for _ in range(5):
        limiter.check("ip", "x", now=0.0)
    with pytest.raises(RateLimited) as info:
        limiter.check("ip", "x", now=0.0)
    assert info.value.retry_after == pytest.approx(1.0)


def test_clock_going_backwards_refills_nothing() -> None:
    limiter = RateLimiter({"ip": RateLimit(1, 10.0)})
    limiter.check("ip", "x", now=100.0)
    with pytest.raises(RateLimited):
        limiter.check("ip", "x", now=50.0)


def test_defaults_cover_every_kind() -> None:
    assert set(DEFAULT_LIMITS) == {"ip", "visitor", "session", "api_key"}
    limiter = RateLimiter()
    assert limiter.limit("api_key") == DEFAULT_LIMITS["api_key"]


@pytest.mark.parametrize(
    "call",
    [
        lambda: RateLimiter().check("cookie", "x"),  # type: ignore[arg-type]
        lambda: RateLimiter({"cookie": RateLimit(1, 1.0)}),  # type: ignore[dict-item]
        lambda: RateLimit(0, 1.0),
        lambda: RateLimit(1, 0.0),
        lambda: RateLimiter(max_keys=0),
        lambda: RateLimiter().check("ip", "x", cost=0),
    ],
)
def test_invalid_configuration_is_refused(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        call()


def test_reset() -> None:
    limiter = RateLimiter({"ip": RateLimit(1, 60.0), "session": RateLimit(1, 60.0)})
    limiter.check("ip", "a", now=0.0)
    limiter.check("session", "a", now=0.0)
    limiter.reset("ip", "a")
    assert limiter.check("ip", "a", now=0.0) == 0
    limiter.reset("session")
    assert limiter.check("session", "a", now=0.0) == 0
    limiter.reset()
    assert len(limiter) == 0


def test_memory_is_bounded_under_a_flood_of_keys() -> None:
    limiter = RateLimiter({"ip": RateLimit(10, 1.0)}, max_keys=100)
    for i in range(1000):
        limiter.check("ip", f"198.51.100.{i}", now=float(i) * 0.001)
    assert len(limiter) <= 100


def test_idle_full_buckets_are_dropped() -> None:
    limiter = RateLimiter({"ip": RateLimit(10, 1.0)}, max_keys=10)
    for i in range(8):
        limiter.check("ip", f"k{i}", now=0.0)
    # much later every old bucket has refilled: adding keys sweeps them away
    for i in range(3):
        limiter.check("ip", f"new{i}", now=100.0)
    assert len(limiter) == 3


def test_thread_safety_no_request_is_lost() -> None:
    limiter = RateLimiter({"api_key": RateLimit(400, 3600.0)})
    allowed: list[int] = []
    refused: list[int] = []

    def work() -> None:
        for _ in range(150):
            try:
                limiter.check("api_key", "shared", now=0.0)
                allowed.append(1)
            except RateLimited:
                refused.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 400
    assert len(refused) == 200
