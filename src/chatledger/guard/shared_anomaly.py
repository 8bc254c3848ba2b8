"""Anomaly counters shared by every server process of one deployment.

The in-process trackers of :mod:`chatledger.guard.anomaly` see only the requests their own
process serves: spread over N workers, a burst or an enumeration stays under every threshold
N times longer. Here each observation is a row of ``anomaly_marks`` in the deployment's
shared guard state (:mod:`chatledger.guard.shared_state`), counted over the pattern's sliding
window, and the level last reported per key is a row of ``anomaly_alerts``, updated only by
the process that reports a new level (or the same level once the window has passed), so a
finding is reported once for the deployment, not once per process.

Keys and items are stored as keyed pseudonyms. The window uses the wall clock, which every
process and machine shares.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from chatledger.guard.shared_state import Execute, PostgresShared, SharedDb

log = logging.getLogger(__name__)

SWEEP_EVERY = 500

_MARK = """
INSERT INTO anomaly_marks AS m (pattern, key, item, at) VALUES (:pattern, :key, :item, :now)
ON CONFLICT (pattern, key, item) DO UPDATE SET at = {greatest}(m.at, :now)
"""
_COUNT = """
SELECT COUNT(*) FROM (
    SELECT 1 FROM anomaly_marks
    WHERE pattern = :pattern AND key = :key AND at >= :cutoff LIMIT :cap
) AS recent
"""
# Inserts or raises the level and returns it, or returns nothing when this level (or a higher
# one) was already reported within the window.
_ALERT = """
INSERT INTO anomaly_alerts AS a (pattern, key, rank, at) VALUES (:pattern, :key, :rank, :now)
ON CONFLICT (pattern, key) DO UPDATE SET rank = :rank, at = :now
WHERE :rank > a.rank OR :now - a.at >= :window
RETURNING rank
"""
_SWEEP_MARKS = "DELETE FROM anomaly_marks WHERE pattern = :pattern AND at < :cutoff"
_SWEEP_ALERTS = "DELETE FROM anomaly_alerts WHERE pattern = :pattern AND at < :cutoff"


@dataclass(frozen=True, slots=True)
class Observation:
    """What the shared counters say about one observation."""

    count: int
    """Observations (or distinct items) of this key in the window, at most ``cap``."""
    report: bool
    """Whether this process reports the level the count reaches now (no process has yet)."""


class SharedAnomalyCounters:
    """Sliding-window counts per (pattern, key) in the shared guard state."""

    def __init__(self, db: SharedDb) -> None:
        self.db = db
        greatest = "GREATEST" if isinstance(db, PostgresShared) else "MAX"
        self._mark = _MARK.format(greatest=greatest)
        self._observed = 0
        self._windows: dict[str, float] = {}  # pattern -> window, for the sweeps

    def observe(
        self,
        pattern: str,
        key: str,
        item: str | None,
        now: float,
        window: float,
        cap: int,
        grade: Callable[[int], int],
    ) -> Observation:
        """Record one observation of ``key`` (of distinct ``item``, or a new one when None)
        and count the window; ``grade`` turns a count into the level it reaches (0: none),
        and that level is claimed for reporting if it is due."""
        marked = item if item is not None else os.urandom(9).hex()
        params = {
            "pattern": pattern,
            "key": key,
            "item": marked,
            "now": now,
            "cutoff": now - window,
            "cap": cap,
            "window": window,
        }

        def apply(run: Execute) -> Observation:
            run(self._mark, params)
            count = int(run(_COUNT, params)[0][0])
            rank = grade(count)
            if rank == 0:
                return Observation(count, False)
            claimed = run(_ALERT, {**params, "rank": rank})
            return Observation(count, bool(claimed))

        found = self.db.write(apply)
        self._windows[pattern] = window
        self._observed += 1
        if self._observed % SWEEP_EVERY == 0:
            self.sweep(now)
        return found

    def sweep(self, now: float) -> None:
        """Forget observations and reports older than their pattern's window."""
        params = [
            {"pattern": pattern, "cutoff": now - window}
            for pattern, window in self._windows.items()
        ]
        try:
            self.db.write(
                lambda run: [run(sql, p) for p in params for sql in (_SWEEP_MARKS, _SWEEP_ALERTS)]
            )
        except Exception:  # a sweep can wait for the next round
            log.exception("could not sweep old anomaly counters")

    def keys(self) -> int:
        """How many (pattern, key) pairs have observations."""
        return int(
            self.db.read(
                lambda run: run(
                    "SELECT COUNT(*) FROM (SELECT DISTINCT pattern, key FROM anomaly_marks) AS k",
                    {},
                )
            )[0][0]
        )

    def close(self) -> None:
        self.db.close()
