"""Rate limits shared by every server process of one deployment.

:class:`~chatledger.guard.ratelimit.RateLimiter` keeps its buckets in one process; with
``chatledger serve --workers N`` (or several servers on one PostgreSQL database) each process
would grant the full limit, N times over. Here a bucket is one row of the deployment's shared
guard state (:mod:`chatledger.guard.shared_state`) that every process updates with a single
atomic upsert, so the limit holds for the deployment.

A bucket is stored under a keyed pseudonym of its key, never the client's address, visitor
id or session id itself. Time is the wall clock, which every process and machine shares. If
the shared store fails, checks fall back to this process's own buckets rather than refusing
everything.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chatledger.errors import InvalidInput, RateLimited
from chatledger.guard.ratelimit import LimitKind, RateLimit, RateLimiter
from chatledger.guard.shared_state import (
    SQLITE_FILE,
    PostgresShared,
    SharedDb,
    SqliteShared,
    shared_db,
    store_errors,
)

log = logging.getLogger(__name__)

__all__ = ["SQLITE_FILE", "Buckets", "PostgresBuckets", "SharedRateLimiter", "SqliteBuckets"]

_SWEEP_EVERY = 1000

# One statement takes ``cost`` tokens if the refilled bucket holds them (or refuses and keeps
# the refill), and says which: (tokens left, refused). A new key starts full.
_REFILLED = "{least}(:cap, b.tokens + {greatest}(0.0, :now - b.at) * :rate)"
_TAKE = """
INSERT INTO rate_buckets AS b (kind, key, tokens, at, refused)
VALUES (:kind, :key, :cap - :cost, :now, 0)
ON CONFLICT (kind, key) DO UPDATE SET
    tokens = CASE WHEN {refilled} + 1e-9 >= :cost THEN {refilled} - :cost ELSE {refilled} END,
    refused = CASE WHEN {refilled} + 1e-9 >= :cost THEN 0 ELSE 1 END,
    at = {greatest}(b.at, :now)
RETURNING tokens, refused
"""
_PEEK = "SELECT tokens, at FROM rate_buckets WHERE kind = :kind AND key = :key"


def _take_sql(least: str, greatest: str) -> str:
    refilled = _REFILLED.format(least=least, greatest=greatest)
    return _TAKE.format(refilled=refilled, greatest=greatest)


class Buckets:
    """Shared buckets: rows of ``rate_buckets`` in the deployment's shared guard state."""

    def __init__(self, db: SharedDb, least: str, greatest: str) -> None:
        self.db = db
        self._take = _take_sql(least, greatest)

    def take(self, params: dict[str, Any]) -> tuple[float, bool]:
        row = self.db.write_one(self._take, params)[0]
        return float(row[0]), bool(row[1])

    def peek(self, kind: str, key: str) -> tuple[float, float] | None:
        rows = self.db.read(lambda run: run(_PEEK, {"kind": kind, "key": key}))
        return None if not rows else (float(rows[0][0]), float(rows[0][1]))

    def delete(self, kind: str | None, key: str | None, idle_before: float | None) -> None:
        sql, params = _delete_sql(kind, key, idle_before)
        self.db.write_one(sql, params)

    def count(self) -> int:
        return int(self.db.read(lambda run: run("SELECT COUNT(*) FROM rate_buckets", {}))[0][0])

    def close(self) -> None:
        self.db.close()


class SqliteBuckets(Buckets):
    """Buckets in the SQLite file of shared guard state at ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__(SqliteShared(path), "MIN", "MAX")
        self.path = path


class PostgresBuckets(Buckets):
    """Buckets in an UNLOGGED table of the ledger's schema."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        super().__init__(PostgresShared(connect), "LEAST", "GREATEST")


def buckets_on(db: SharedDb) -> Buckets:
    """Buckets kept in ``db``."""
    if isinstance(db, PostgresShared):
        return Buckets(db, "LEAST", "GREATEST")
    return Buckets(db, "MIN", "MAX")


def _delete_sql(
    kind: str | None, key: str | None, idle_before: float | None
) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if kind is not None:
        clauses.append("kind = :kind")
        params["kind"] = kind
    if key is not None:
        clauses.append("key = :key")
        params["key"] = key
    if idle_before is not None:
        clauses.append("at < :idle")
        params["idle"] = idle_before
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return f"DELETE FROM rate_buckets{where}", params


class SharedRateLimiter(RateLimiter):
    """A :class:`RateLimiter` whose buckets every process of the deployment shares."""

    def __init__(
        self,
        buckets: Buckets,
        limits: Mapping[LimitKind, RateLimit] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        pseudonym: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__(limits, clock=clock)
        self.buckets = buckets
        self._pseudonym = pseudonym
        self._shared_checks = 0
        self._failing = False
        # The longest any bucket takes to refill: an older row is full, the same as none.
        self._idle_after = max(limit.capacity / limit.rate for limit in self._limits.values())

    def check(
        self, kind: LimitKind, key: str, now: float | None = None, *, cost: float = 1.0
    ) -> int:
        limit = self.limit(kind)
        if cost <= 0 or cost > limit.capacity:
            raise InvalidInput(
                "cost must be positive and at most the burst size", details={"cost": cost}
            )
        at = self._clock() if now is None else now
        params = {
            "kind": kind,
            "key": self._stored(kind, key),
            "cap": limit.capacity,
            "rate": limit.rate,
            "cost": float(cost),
            "now": at,
        }
        try:
            tokens, refused = self.buckets.take(params)
        except _STORE_ERRORS as exc:
            self._fall_back(exc)
            return super().check(kind, key, at, cost=cost)
        self._failing = False
        self._maybe_sweep(at)
        if refused:
            raise RateLimited(
                f"rate limit exceeded for {kind}",
                retry_after=round((cost - tokens) / limit.rate, 3),
                details={"kind": kind, "limit": limit.requests, "per_seconds": limit.per_seconds},
            )
        return math.floor(tokens + 1e-9)

    def remaining(self, kind: LimitKind, key: str, now: float | None = None) -> int:
        limit = self.limit(kind)
        at = self._clock() if now is None else now
        try:
            found = self.buckets.peek(kind, self._stored(kind, key))
        except _STORE_ERRORS as exc:
            self._fall_back(exc)
            return super().remaining(kind, key, at)
        if found is None:
            return math.floor(limit.capacity)
        tokens, last = found
        return math.floor(min(limit.capacity, tokens + max(0.0, at - last) * limit.rate) + 1e-9)

    def reset(self, kind: LimitKind | None = None, key: str | None = None) -> None:
        super().reset(kind, key)
        stored = self._stored(kind, key) if kind is not None and key is not None else None
        self.buckets.delete(kind, stored, None)

    def __len__(self) -> int:
        return self.buckets.count()

    def close(self) -> None:
        self.buckets.close()

    def _stored(self, kind: str, key: str) -> str:
        return self._pseudonym(f"ratelimit:{kind}:{key}") if self._pseudonym else key

    def _maybe_sweep(self, now: float) -> None:
        self._shared_checks += 1
        if self._shared_checks % _SWEEP_EVERY == 0:
            try:
                self.buckets.delete(None, None, now - self._idle_after)
            except Exception:  # a sweep can wait for the next round
                log.exception("could not sweep idle rate-limit buckets")

    def _fall_back(self, exc: BaseException) -> None:
        if not self._failing:
            log.error("shared rate limits unavailable, using this process's own: %s", exc)
            self._failing = True


_STORE_ERRORS = store_errors()


def shared_limiter(
    store: Any,
    limits: Mapping[LimitKind, RateLimit],
    pseudonym: Callable[[str], str] | None = None,
    db: SharedDb | None = None,
) -> SharedRateLimiter:
    """The limiter for a platform on ``store`` (SQLite file or PostgreSQL schema), its
    buckets in ``db`` (the deployment's shared guard state by default) under ``pseudonym``
    of their keys."""
    return SharedRateLimiter(buckets_on(db or shared_db(store)), limits, pseudonym=pseudonym)
