"""Anomalous query patterns, detected from a stream of observed events.

Four patterns, each counted per key over a sliding window and graded on a ladder of
thresholds (low < medium < high < critical):

- ``burst``: many requests from one key (IP, visitor, API key) in a short window;
- ``enumeration``: one key touching many *distinct* conversations or documents;
- ``repeated_injection``: several flagged injection attempts from one session;
- ``failed_logins``: many failed logins from one address.

A finding is returned when a key first reaches a level, when it climbs to a higher one,
and again once per window while it stays there, so a sustained attack keeps showing up
without one finding per request. State is in memory, per process, bounded by ``max_keys``
per pattern (least recently seen keys are dropped first); given
:class:`~chatledger.guard.shared_anomaly.SharedAnomalyCounters`, the counts and reports are
the deployment's, shared by every server process, and the in-memory trackers only stand in
while that store fails.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from chatledger.errors import InvalidInput
from chatledger.guard.shared_anomaly import SharedAnomalyCounters
from chatledger.guard.shared_state import store_errors
from chatledger.guard.verdict import Verdict

log = logging.getLogger(__name__)

ResourceType = Literal["conversation", "document"]


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class FindingKind(StrEnum):
    BURST = "burst"
    ENUMERATION = "enumeration"
    REPEATED_INJECTION = "repeated_injection"
    FAILED_LOGINS = "failed_logins"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    severity: Severity
    key: str
    details: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "severity": self.severity.value,
            "key": self.key,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class Ladder:
    """Counts within ``window`` seconds at which each severity is reached."""

    window: float
    low: int
    medium: int
    high: int
    critical: int

    def __post_init__(self) -> None:
        steps = (self.low, self.medium, self.high, self.critical)
        if self.window <= 0 or self.low <= 0 or list(steps) != sorted(steps):
            raise InvalidInput("a ladder needs a positive window and rising thresholds")

    def rank(self, count: int) -> int:
        """The rank of the severity ``count`` reaches (0: none)."""
        graded = self.grade(count)
        return 0 if graded is None else graded[0].rank

    def grade(self, count: int) -> tuple[Severity, int] | None:
        for severity, threshold in (
            (Severity.CRITICAL, self.critical),
            (Severity.HIGH, self.high),
            (Severity.MEDIUM, self.medium),
            (Severity.LOW, self.low),
        ):
            if count >= threshold:
                return severity, threshold
        return None


@dataclass(frozen=True, slots=True)
class AnomalyThresholds:
    burst: Ladder = Ladder(window=10.0, low=20, medium=40, high=80, critical=160)
    enumeration: Ladder = Ladder(window=300.0, low=15, medium=30, high=60, critical=120)
    repeated_injection: Ladder = Ladder(window=600.0, low=2, medium=3, high=5, critical=10)
    failed_logins: Ladder = Ladder(window=300.0, low=5, medium=10, high=20, critical=50)


class _Tracker:
    """Sliding-window counts per key for one pattern, with alert de-duplication."""

    def __init__(
        self, kind: FindingKind, ladder: Ladder, max_keys: int, distinct: bool, pattern: str = ""
    ) -> None:
        self.kind = kind
        self.pattern = pattern or kind.value
        self.ladder = ladder
        self.max_keys = max_keys
        self.distinct = distinct
        # key -> timestamps (plain) or item -> last seen (distinct); LRU order
        self.events: OrderedDict[str, deque[float] | OrderedDict[str, float]] = OrderedDict()
        self.alerted: dict[str, tuple[Severity, float]] = {}

    def observe(
        self, key: str, now: float, item: str | None, extra: dict[str, Any]
    ) -> Finding | None:
        cutoff = now - self.ladder.window
        cap = self.ladder.critical + 1  # never need to count beyond critical
        store = self.events.get(key)
        if store is None:
            store = OrderedDict() if self.distinct else deque(maxlen=cap)
            self.events[key] = store
            while len(self.events) > self.max_keys:
                old, _ = self.events.popitem(last=False)
                self.alerted.pop(old, None)
        else:
            self.events.move_to_end(key)

        if isinstance(store, OrderedDict):
            marker = item if item is not None else ""
            store.pop(marker, None)
            store[marker] = now
            while store and next(iter(store.values())) < cutoff:
                store.popitem(last=False)
            while len(store) > cap:
                store.popitem(last=False)
        else:
            store.append(now)
            while store and store[0] < cutoff:
                store.popleft()
        count = len(store)

        graded = self.ladder.grade(count)
        if graded is None:
            return None
        severity, _ = graded
        last = self.alerted.get(key)
        if (
            last is not None
            and last[0].rank >= severity.rank
            and now - last[1] < self.ladder.window
        ):
            return None  # already reported at this level within the window
        self.alerted[key] = (severity, now)
        return finding(self.kind, self.ladder, key, count, extra)


def finding(
    kind: FindingKind, ladder: Ladder, key: str, count: int, extra: dict[str, Any]
) -> Finding:
    graded = ladder.grade(count)
    assert graded is not None
    severity, threshold = graded
    details = {"count": count, "window_seconds": ladder.window, "threshold": threshold, **extra}
    return Finding(kind, severity, key, details)


class AnomalyDetector:
    """Thread-safe detector of the four patterns; ``clock`` is injectable.

    Without ``shared`` it counts in memory, for this process; with it, for the deployment
    (``clock`` then defaults to the wall clock, which all processes share), keys and items
    stored as ``pseudonym`` of themselves.
    """

    def __init__(
        self,
        thresholds: AnomalyThresholds | None = None,
        *,
        clock: Callable[[], float] | None = None,
        max_keys: int = 10_000,
        shared: SharedAnomalyCounters | None = None,
        pseudonym: Callable[[str], str] | None = None,
    ) -> None:
        if max_keys <= 0:
            raise InvalidInput("max_keys must be positive", details={"max_keys": max_keys})
        t = thresholds or AnomalyThresholds()
        self._clock = clock or (time.time if shared is not None else time.monotonic)
        self._lock = threading.Lock()
        self.shared = shared
        self._pseudonym = pseudonym
        self._failing = False
        self._burst = _Tracker(FindingKind.BURST, t.burst, max_keys, distinct=False)
        self._enumeration = {
            kind: _Tracker(
                FindingKind.ENUMERATION, t.enumeration, max_keys, True, f"enumeration:{kind}"
            )
            for kind in ("conversation", "document")
        }
        self._injection = _Tracker(
            FindingKind.REPEATED_INJECTION, t.repeated_injection, max_keys, distinct=False
        )
        self._logins = _Tracker(FindingKind.FAILED_LOGINS, t.failed_logins, max_keys, False)

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _observe(
        self, tracker: _Tracker, key: str, now: float | None, item: str | None = None, **extra: Any
    ) -> list[Finding]:
        at = self._now(now)
        if self.shared is not None:
            try:
                return self._observe_shared(self.shared, tracker, key, at, item, extra)
            except _STORE_ERRORS as exc:
                if not self._failing:
                    log.error("shared anomaly counters unavailable, counting here: %s", exc)
                    self._failing = True
        with self._lock:
            found = tracker.observe(key, at, item, extra)
        return [found] if found is not None else []

    def _observe_shared(
        self,
        shared: SharedAnomalyCounters,
        tracker: _Tracker,
        key: str,
        at: float,
        item: str | None,
        extra: dict[str, Any],
    ) -> list[Finding]:
        ladder = tracker.ladder
        seen = shared.observe(
            tracker.pattern,
            self._stored(f"anomaly:{tracker.pattern}:{key}"),
            None if item is None else self._stored(f"anomaly-item:{item}"),
            at,
            ladder.window,
            ladder.critical + 1,  # never need to count beyond critical
            ladder.rank,
        )
        self._failing = False
        if not seen.report:
            return []
        return [finding(tracker.kind, ladder, key, seen.count, extra)]

    def _stored(self, value: str) -> str:
        return self._pseudonym(value) if self._pseudonym is not None else value

    def record_request(self, key: str, *, now: float | None = None) -> list[Finding]:
        """One request by ``key`` (an IP, visitor id or API key id)."""
        return self._observe(self._burst, key, now)

    def record_access(
        self, key: str, resource_type: ResourceType, resource_id: str, *, now: float | None = None
    ) -> list[Finding]:
        """``key`` read conversation or document ``resource_id``."""
        tracker = self._enumeration.get(resource_type)
        if tracker is None:
            raise InvalidInput(
                "resource_type must be 'conversation' or 'document'",
                details={"resource_type": resource_type},
            )
        return self._observe(tracker, key, now, resource_id, resource_type=resource_type)

    def record_injection(
        self, session_id: str, verdict: Verdict | None = None, *, now: float | None = None
    ) -> list[Finding]:
        """An injection attempt in ``session_id`` (unflagged verdicts are ignored)."""
        if verdict is not None and not verdict.flagged:
            return []
        extra: dict[str, Any] = {}
        if verdict is not None:
            extra = {"last_score": verdict.score, "source": verdict.source}
        return self._observe(self._injection, session_id, now, **extra)

    def record_failed_login(self, address: str, *, now: float | None = None) -> list[Finding]:
        """A failed login from ``address``."""
        return self._observe(self._logins, address, now)

    def tracked_keys(self) -> int:
        """How many keys are held across all patterns (for memory checks)."""
        if self.shared is not None and not self._failing:
            return self.shared.keys()
        with self._lock:
            trackers = [self._burst, self._injection, self._logins, *self._enumeration.values()]
            return sum(len(t.events) for t in trackers)

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()


_STORE_ERRORS = store_errors()
