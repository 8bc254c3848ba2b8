"""Full verification in worker processes.

The seqs are cut into ranges whose size is a power of two (a multiple of the batch), so
that every range starts on a subtree boundary. Each worker opens its own store from a
picklable description (the SQLite file or the PostgreSQL URL), reads the two entries before
its range for the chain links across the boundary, and checks the range exactly as a single
scan would (:class:`~chatledger.ledger.verify.RangeCheck`); the calling process checks
ranges too (:class:`_Schedule`). It merges the results in seq order
(:class:`~chatledger.ledger.verify.Merge`): it stops at the first range a problem stopped,
so nothing a single scan would not have reached is reported, and it rebuilds the roots and
the nodes above the ranges from the ranges' subtree hashes.

Workers are spawned, not forked: the caller's threads (the server's) must not be copied.
A spawned worker imports the caller's main module again (the CLI's or the server's: up to a
couple of seconds) before it starts; 'forkserver' would not spare it on Python 3.11, whose
fork server does not preload the main module. Hence the threshold of ``PARALLEL_MIN``.

The secrets reach the workers only through the pool's pipe, never a file: the entry MAC key
and the subject keys the parent unwrapped (the key-wrapping key stays in the parent, inside
:class:`MasterSecret`, which keeps no raw bytes to pass on).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from chatledger.ledger.merkle import LEAF_PREFIX
from chatledger.ledger.verify import (
    EntryMac,
    KeyMaterial,
    Merge,
    PayloadChecker,
    Progress,
    RangeCheck,
    RangeResult,
    Tuning,
    as_bytes,
    subject_key_table,
)
from chatledger.privacy.keys import MasterSecret
from chatledger.store.base import Store

TASKS_PER_WORKER = 4
"""Ranges per worker: enough to even out uneven ranges, few enough to keep merging cheap."""

StoreAddress = tuple[str, str]
"""``("sqlite", path)`` or ``("postgresql", url)``."""


@dataclass(frozen=True)
class ParallelPlan:
    workers: int
    size: int
    wanted: set[int]
    """Tree sizes whose roots the checkpoints need."""
    erased: set[int]
    """Seqs whose payload a recorded erasure removed."""
    check_payloads: bool
    tuning: Tuning

    def range_size(self) -> int:
        batch = self.tuning.batch
        if batch < 1 or batch & (batch - 1):
            raise ValueError("the batch must be a power of two")
        chosen = self.tuning.range_size
        if chosen is None:
            target = max(batch, self.size // (self.workers * TASKS_PER_WORKER))
            return 1 << (target.bit_length() - 1)
        if chosen < batch or chosen & (chosen - 1):
            raise ValueError("the range size must be a power of two, at least the batch")
        return chosen

    def ranges(self) -> list[tuple[int, int]]:
        step = self.range_size()
        return [(start, min(start + step, self.size)) for start in range(0, self.size, step)]


@dataclass(frozen=True)
class _Setup:
    """What every worker needs, sent once when it starts."""

    store: StoreAddress
    mac_key: bytes | None
    keys: dict[str, KeyMaterial] | None
    keys_known: bool
    erased: frozenset[int]
    wanted: frozenset[int]
    batch: int


def address(store: Store) -> StoreAddress | None:
    """Where a worker finds the same store, or None if it cannot."""
    if store.dialect == "sqlite":
        path = getattr(store, "path", None)
        return ("sqlite", str(path)) if path is not None else None
    if store.dialect == "postgresql":
        url = getattr(store, "url", None)
        return ("postgresql", url) if isinstance(url, str) else None
    return None


def run_parallel(
    store: Store,
    master: MasterSecret | None,
    mac_key: bytes | None,
    plan: ParallelPlan,
    merge: Merge,
    progress: Progress | None,
) -> bool:
    """Check the ledger in ``plan.workers`` processes (this one and ``plan.workers - 1``
    workers), merging into ``merge``. False (and nothing done) when workers cannot open
    this store."""
    where = address(store)
    if where is None or (master is not None and mac_key is None):
        return False
    keys = subject_key_table(store, master) if plan.check_payloads else None
    setup = _Setup(
        where,
        mac_key,
        keys,
        master is not None,
        frozenset(plan.erased),
        frozenset(plan.wanted),
        plan.tuning.batch,
    )
    here = _worker(setup, store, plan.check_payloads)
    ranges = plan.ranges()
    processes = max(1, min(plan.workers - 1, len(ranges)))
    with ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start,
        initargs=(setup, plan.check_payloads),
    ) as pool:
        try:
            _Schedule(pool, processes, ranges, here).run(merge, progress, plan.size)
        finally:  # after a stopping problem, or an error, no queued range runs
            pool.shutdown(wait=True, cancel_futures=True)
    return True


class _Schedule:
    """This process checks ranges from the front, in the order they are merged, while the
    pool takes them from the back, a few ahead of each worker: this process is at work
    while the workers start (a second or two), and does more of the ranges the slower they
    are; the merge waits only where the two meet."""

    def __init__(
        self,
        pool: ProcessPoolExecutor,
        processes: int,
        ranges: Sequence[tuple[int, int]],
        here: _Worker,
    ) -> None:
        self.pool = pool
        self.ranges = ranges
        self.here = here
        self.slots: dict[int, Future[RangeResult] | RangeResult] = {}
        self.front = 0
        """The first range nobody took from the front."""
        self.back = len(ranges)
        """The last range the pool took (``len(ranges)``: none yet)."""
        self.queued: set[Future[RangeResult]] = set()
        self.processes = processes
        self.ahead = processes
        """Ranges queued in the pool: one per worker until one is done (a worker that has
        not started yet holds its range until it has), then two each."""

    def run(self, merge: Merge, progress: Progress | None, size: int) -> None:
        for index in range(len(self.ranges)):
            self._feed_pool()
            result = self.result(index)
            merge.add(result, functools.partial(self._next_stored, index + 1))
            if progress:
                progress(result.verified, size)
            if merge.done:
                return

    def result(self, index: int) -> RangeResult:
        """Range ``index``'s result, checked here if the pool has not taken it."""
        while index >= self.front and self.front < self.back:
            self.slots[self.front] = _check(self.here, self.ranges[self.front])
            self.front += 1
            self._feed_pool()
        slot = self.slots[index]
        return slot.result() if isinstance(slot, Future) else slot

    def _feed_pool(self) -> None:
        waiting = {f for f in self.queued if not f.done()}
        if len(waiting) < len(self.queued):
            self.ahead = 2 * self.processes
        self.queued = waiting
        while self.back > self.front and len(self.queued) < self.ahead:
            self.back -= 1
            future = self.pool.submit(check_range, self.ranges[self.back])
            self.slots[self.back] = future
            self.queued.add(future)

    def _next_stored(self, index: int) -> int | None:
        """The first stored seq in the ranges from ``index`` on."""
        for later in range(index, len(self.ranges)):
            found = self.result(later).first_seq
            if found is not None:
                return found
        return None


# -- in the worker --------------------------------------------------------------------------


@dataclass
class _Worker:
    setup: _Setup
    store: Store
    payloads: PayloadChecker | None


_WORKER: _Worker | None = None


def _start(setup: _Setup, check_payloads: bool) -> None:
    global _WORKER
    store = _open(setup.store)
    atexit.register(store.close)
    _WORKER = _worker(setup, store, check_payloads)


def _worker(setup: _Setup, store: Store, check_payloads: bool) -> _Worker:
    """A range checker's state; in the parent too, which checks exactly as the workers do."""
    checker = None
    if check_payloads:
        checker = PayloadChecker(
            store, None, setup.erased, setup.keys or {}, keys_known=setup.keys_known
        )
    return _Worker(setup, store, checker)


def _open(where: StoreAddress) -> Store:
    dialect, location = where
    if dialect == "sqlite":
        from chatledger.store.sqlite import SqliteStore

        return SqliteStore(location)
    from chatledger.store.postgres import PostgresStore

    return PostgresStore(location, pool_size=1, application_name="chatledger-verify")


def check_range(bounds: tuple[int, int]) -> RangeResult:
    """In a worker: check the entries ``[start, end)`` (see :class:`RangeCheck`)."""
    if _WORKER is None:
        raise RuntimeError("the verification worker was not started")
    return _check(_WORKER, bounds)


def _check(worker: _Worker, bounds: tuple[int, int]) -> RangeResult:
    start, end = bounds
    setup = worker.setup
    if worker.payloads is not None:  # counts are per range; the key cache stays
        worker.payloads.checked = worker.payloads.erased = 0
    scan = RangeCheck(
        worker.store,
        start,
        end,
        mac=EntryMac(setup.mac_key) if setup.mac_key is not None else None,
        payloads=worker.payloads,
        wanted=setup.wanted,
        batch=setup.batch,
    )
    try:
        prev, prev2 = _leaves_before(worker.store, start)
        return scan.run(prev, prev2)
    except Exception as exc:  # raised by the merge if it gets this far
        return RangeResult(start, end, start, True, [], [], {}, [], 0, 0, scan.first_seq, error=exc)


def _leaves_before(store: Store, start: int) -> tuple[bytes | None, bytes | None]:
    """The leaf hashes of entries ``start - 1`` and ``start - 2``, as a scan from 0 would
    have them when it reaches ``start`` (if it does: else this range's result is unused)."""
    leaves: dict[int, bytes] = {}
    for rows in store.entry_batches(max(0, start - 2), start):
        for row in rows:
            leaves[int(row[0])] = hashlib.sha256(LEAF_PREFIX + as_bytes(row[11])).digest()
    return leaves.get(start - 1), leaves.get(start - 2)
