"""In-memory token-bucket rate limits per (kind, key).

Kinds are the identities a request can be charged to: ``ip``, ``visitor``, ``session`` and
``api_key``, each with its own limit. A bucket holds up to ``burst`` tokens and refills at
``requests / per_seconds`` tokens a second; a request takes one token or is refused with
:class:`~chatledger.errors.RateLimited` saying when one will be available.

A full bucket is the same as no bucket, so idle keys are dropped as they refill (and the
least recently used ones once ``max_keys`` is reached): memory stays bounded under a flood
of distinct keys. One process only: the platform uses
:class:`~chatledger.guard.shared_limits.SharedRateLimiter`, whose buckets every process shares.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from chatledger.errors import InvalidInput, RateLimited

LimitKind = Literal["ip", "visitor", "session", "api_key"]
LIMIT_KINDS: tuple[LimitKind, ...] = ("ip", "visitor", "session", "api_key")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``requests`` per ``per_seconds``, with bursts of up to ``burst`` (default: requests)."""

    requests: int
    per_seconds: float
    burst: int | None = None

    def __post_init__(self) -> None:
        if (
            self.requests <= 0
            or self.per_seconds <= 0
            or (self.burst is not None and self.burst <= 0)
        ):
            raise InvalidInput("rate limits must be positive", details={"limit": repr(self)})

    @property
    def capacity(self) -> float:
        return float(self.burst if self.burst is not None else self.requests)

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self.requests / self.per_seconds


DEFAULT_LIMITS: Mapping[LimitKind, RateLimit] = {
    "ip": RateLimit(120, 60.0),
    "visitor": RateLimit(60, 60.0),
    "session": RateLimit(30, 60.0),
    "api_key": RateLimit(600, 60.0),
}

_SWEEP_EVERY = 256


class RateLimiter:
    """Thread-safe token buckets keyed by (kind, key); ``clock`` is injectable for tests."""

    def __init__(
        self,
        limits: Mapping[LimitKind, RateLimit] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        merged = dict(DEFAULT_LIMITS)
        merged.update(limits or {})
        unknown = set(merged) - set(LIMIT_KINDS)
        if unknown:
            raise InvalidInput("unknown rate-limit kind", details={"kinds": sorted(unknown)})
        if max_keys <= 0:
            raise InvalidInput("max_keys must be positive", details={"max_keys": max_keys})
        self._limits: dict[LimitKind, RateLimit] = merged
        self._clock = clock
        self._max_keys = max_keys
        # (kind, key) -> [tokens, last refill time]; order = least recently used first
        self._buckets: OrderedDict[tuple[LimitKind, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()
        self._checks = 0

    def limit(self, kind: LimitKind) -> RateLimit:
        try:
            return self._limits[kind]
        except KeyError:
            raise InvalidInput(
                "unknown rate-limit kind", details={"kind": kind, "allowed": list(LIMIT_KINDS)}
            ) from None

    def _refill(self, limit: RateLimit, bucket: list[float], now: float) -> None:
        elapsed = max(0.0, now - bucket[1])  # a clock that steps back refills nothing
        bucket[0] = min(limit.capacity, bucket[0] + elapsed * limit.rate)
        bucket[1] = max(bucket[1], now)

    def check(
        self, kind: LimitKind, key: str, now: float | None = None, *, cost: float = 1.0
    ) -> int:
        """Take ``cost`` tokens for (kind, key); return the whole requests left.

        Raises :class:`RateLimited` (with ``retry_after`` in seconds) when the bucket is short.
        """
        limit = self.limit(kind)
        if cost <= 0 or cost > limit.capacity:
            raise InvalidInput(
                "cost must be positive and at most the burst size", details={"cost": cost}
            )
        at = self._clock() if now is None else now
        with self._lock:
            ident = (kind, key)
            bucket = self._buckets.get(ident)
            if bucket is None:
                self._make_room(at)
                bucket = [limit.capacity, at]
                self._buckets[ident] = bucket
            else:
                self._buckets.move_to_end(ident)
                self._refill(limit, bucket, at)
            if bucket[0] + 1e-9 < cost:
                retry_after = (cost - bucket[0]) / limit.rate
                raise RateLimited(
                    f"rate limit exceeded for {kind}",
                    retry_after=round(retry_after, 3),
                    details={
                        "kind": kind,
                        "limit": limit.requests,
                        "per_seconds": limit.per_seconds,
                    },
                )
            bucket[0] -= cost
            remaining = math.floor(bucket[0] + 1e-9)
            self._checks += 1
            if self._checks % _SWEEP_EVERY == 0:
                self._sweep(at)
            return remaining

    def remaining(self, kind: LimitKind, key: str, now: float | None = None) -> int:
        """Whole requests (kind, key) could make now, without taking any."""
        limit = self.limit(kind)
        at = self._clock() if now is None else now
        with self._lock:
            bucket = self._buckets.get((kind, key))
            if bucket is None:
                return math.floor(limit.capacity)
            probe = list(bucket)
            self._refill(limit, probe, at)
            return math.floor(probe[0] + 1e-9)

    def reset(self, kind: LimitKind | None = None, key: str | None = None) -> None:
        """Forget buckets: all, one kind's, or one (kind, key)."""
        with self._lock:
            if kind is None:
                self._buckets.clear()
            elif key is None:
                for ident in [i for i in self._buckets if i[0] == kind]:
                    del self._buckets[ident]
            else:
                self._buckets.pop((kind, key), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)

    def close(self) -> None:
        """Release what the limiter holds (nothing, in memory)."""

    def _make_room(self, now: float) -> None:
        """Before adding a key: drop refilled buckets, then the least recently used."""
        if len(self._buckets) >= self._max_keys // 2:
            self._sweep(now)
        while len(self._buckets) >= self._max_keys:
            self._buckets.popitem(last=False)

    def _sweep(self, now: float) -> None:
        """Drop least-recently-used buckets that have refilled completely."""
        while self._buckets:
            (kind, _key), bucket = next(iter(self._buckets.items()))
            limit = self._limits[kind]
            if bucket[0] + (now - bucket[1]) * limit.rate < limit.capacity:
                break
            self._buckets.popitem(last=False)
