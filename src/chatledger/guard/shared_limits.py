"""Rate limits shared by every server process of one deployment.

:class:`~chatledger.guard.ratelimit.RateLimiter` keeps its buckets in one process; with
``chatledger serve --workers N`` (or several servers on one PostgreSQL database) each process
would grant the full limit, N times over. Here a bucket is one row that every process
updates with a single atomic upsert, so the limit holds for the deployment:

- SQLite: a small file of its own beside the database (``rate_limits.db``), so that a check
  never waits behind a ledger commit. Writers of different processes take turns through a
  file lock, which wakes the next one at once (SQLite's busy handler sleeps in steps).
- PostgreSQL: an UNLOGGED table in the ledger's schema (the application role may create
  the platform's own tables), on a connection of its own; the row lock makes the upsert exact.

Buckets are transient state, not part of the record: nothing here is versioned with the
schema, and losing the table (a crash of an UNLOGGED table, a deleted file) only refills
every bucket. A bucket is stored under a keyed pseudonym of its key, never the client's
address, visitor id or session id itself. Time is the wall clock, which every process and
machine shares. If the shared store fails, checks fall back to this process's own buckets
rather than refusing everything.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from chatledger.errors import ChatLedgerError, InvalidInput, RateLimited
from chatledger.guard.ratelimit import LimitKind, RateLimit, RateLimiter

log = logging.getLogger(__name__)

SQLITE_FILE = "rate_limits.db"
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
_TABLE = """
CREATE {unlogged} TABLE IF NOT EXISTS rate_buckets (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    tokens DOUBLE PRECISION NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    refused INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
)
"""


def _take_sql(least: str, greatest: str) -> str:
    refilled = _REFILLED.format(least=least, greatest=greatest)
    return _TAKE.format(refilled=refilled, greatest=greatest)


class Buckets(Protocol):
    """Where shared buckets live."""

    def take(self, params: dict[str, Any]) -> tuple[float, bool]: ...

    def peek(self, kind: str, key: str) -> tuple[float, float] | None: ...

    def delete(self, kind: str | None, key: str | None, idle_before: float | None) -> None: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class SqliteBuckets:
    """Buckets in a SQLite file of their own (opened on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._file_lock = -1
        self._take = _take_sql("MIN", "MAX")

    def _db(self) -> sqlite3.Connection:
        """This file's connection (call with ``_lock`` held)."""
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = OFF")  # transient: a lost write refills
            conn.execute("PRAGMA secure_delete = ON")
            self._file_lock = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            self._conn = conn
            self._locked(lambda c: c.execute(_TABLE.format(unlogged="")))
        return self._conn

    def _locked(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        assert self._conn is not None
        fcntl.flock(self._file_lock, fcntl.LOCK_EX)
        try:
            return fn(self._conn)
        finally:
            fcntl.flock(self._file_lock, fcntl.LOCK_UN)

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            self._db()
            return self._locked(fn)

    def take(self, params: dict[str, Any]) -> tuple[float, bool]:
        row = self._write(lambda c: c.execute(self._take, params).fetchone())
        return float(row[0]), bool(row[1])

    def peek(self, kind: str, key: str) -> tuple[float, float] | None:
        with self._lock:
            row = self._db().execute(_PEEK, {"kind": kind, "key": key}).fetchone()
        return None if row is None else (float(row[0]), float(row[1]))

    def delete(self, kind: str | None, key: str | None, idle_before: float | None) -> None:
        sql, params = _delete_sql(kind, key, idle_before)
        self._write(lambda c: c.execute(sql, params))

    def count(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM rate_buckets").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                os.close(self._file_lock)
                self._conn = None


class PostgresBuckets:
    """Buckets in an UNLOGGED table of the ledger's schema, on a connection of their own."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._lock = threading.Lock()
        self._take = _named(_take_sql("LEAST", "GREATEST"))

    def _run(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        import psycopg

        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                conn = self._connect()
                # (Another process may create it at the same moment.)
                with contextlib.suppress(
                    psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable
                ):
                    conn.execute(_TABLE.format(unlogged="UNLOGGED"))
                self._conn = conn
            try:
                cur = self._conn.execute(sql, params)
                return cur.fetchall() if cur.description is not None else []
            except psycopg.Error:
                if self._conn.broken:
                    self._conn.close()
                    self._conn = None
                raise

    def take(self, params: dict[str, Any]) -> tuple[float, bool]:
        row = self._run(self._take, params)[0]
        return float(row[0]), bool(row[1])

    def peek(self, kind: str, key: str) -> tuple[float, float] | None:
        rows = self._run(_named(_PEEK), {"kind": kind, "key": key})
        return None if not rows else (float(rows[0][0]), float(rows[0][1]))

    def delete(self, kind: str | None, key: str | None, idle_before: float | None) -> None:
        sql, params = _delete_sql(kind, key, idle_before)
        self._run(_named(sql), params)

    def count(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM rate_buckets", {})[0][0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _named(sql: str) -> str:
    """``:name`` placeholders (sqlite3's) as psycopg's ``%(name)s``."""
    return re.sub(r"(?<![:\w]):([a-z_]+)", r"%(\1)s", sql)


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


def _pg_error() -> type[BaseException]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return OSError
    return psycopg.Error


_STORE_ERRORS: tuple[type[BaseException], ...] = (
    sqlite3.Error,
    OSError,
    ChatLedgerError,
    _pg_error(),
)


def shared_limiter(
    store: Any,
    limits: Mapping[LimitKind, RateLimit],
    pseudonym: Callable[[str], str] | None = None,
) -> SharedRateLimiter:
    """The limiter for a platform on ``store`` (SQLite file or PostgreSQL schema); buckets
    are stored under ``pseudonym`` of their keys."""
    if getattr(store, "dialect", "") == "postgresql":
        url = str(store.url)

        def connect() -> Any:
            import psycopg

            return psycopg.connect(
                url, autocommit=True, application_name="chatledger-ratelimits", connect_timeout=10
            )

        return SharedRateLimiter(PostgresBuckets(connect), limits, pseudonym=pseudonym)
    path = Path(store.path).with_name(SQLITE_FILE)
    return SharedRateLimiter(SqliteBuckets(path), limits, pseudonym=pseudonym)
