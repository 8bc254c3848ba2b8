"""Group commit: one writer thread sequences, hashes and durably commits every append.

Callers hand in work (ready events, or a function that changes the platform's own tables
and returns the events that record the change) and wait on a future. The writer drains
everything queued, runs it in one ``BEGIN IMMEDIATE`` transaction (each function in its
own savepoint, so one failure does not sink its neighbours), commits once with
``synchronous=FULL`` and only then resolves the futures: an acknowledged append is
durable, and a change and its audit event commit together or not at all (fail closed).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatledger.errors import ChatLedgerError, StorageError
from chatledger.events import Event
from chatledger.ledger import merkle
from chatledger.ledger.entry import GENESIS_PREV, PreparedEvent, utc_timestamp
from chatledger.ledger.note import Checkpoint, NoteSigner
from chatledger.privacy.keys import SYSTEM_KEY_REF, MasterSecret
from chatledger.store.base import (
    CheckpointRow,
    EntryRow,
    PayloadRow,
    Store,
    SubjectKeyRow,
    WriteTxn,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Receipt:
    """What an append returns once the event is durable."""

    seq: int
    id: str
    ts: str
    leaf_hash: str


class WorkContext:
    """What a unit of work sees inside the writer's transaction."""

    def __init__(self, txn: WriteTxn, next_seq: int) -> None:
        self.txn = txn
        self._next_seq = next_seq

    @property
    def next_seq(self) -> int:
        """The seq the first event returned by this unit of work will receive."""
        return self._next_seq


WorkFn = Callable[[WorkContext], tuple[T, Sequence[Event]]]


@dataclass
class _Work(Generic[T]):
    events: Sequence[PreparedEvent] = ()
    fn: WorkFn[T] | None = None
    force_checkpoint: bool = False
    future: Future[tuple[Any, list[Receipt]]] = field(default_factory=Future)


class _Head:
    """The writer's view of the tree: size, last leaf hash, right frontier."""

    def __init__(self, size: int, last: bytes | None, frontier: merkle.CompactRange) -> None:
        self.size = size
        self.last = last
        self.frontier = frontier

    def copy(self) -> _Head:
        return _Head(self.size, self.last, self.frontier.copy())


@dataclass
class WriterConfig:
    origin: str
    checkpoint_every: int = 1000
    checkpoint_interval: float = 60.0
    max_batch: int = 5000
    max_payload_bytes: int = 64 * 1024


class LedgerWriter:
    def __init__(
        self,
        store: Store,
        master: MasterSecret,
        signer: NoteSigner,
        config: WriterConfig,
        on_checkpoint: Callable[[CheckpointRow], None] | None = None,
    ) -> None:
        self._store = store
        self._master = master
        self._signer = signer
        self._config = config
        self._on_checkpoint = on_checkpoint
        self._queue: queue.Queue[_Work[Any] | None] = queue.Queue()
        self._head: _Head | None = None
        self._keys: dict[str, tuple[str, AESGCM]] = {}
        latest = store.latest_checkpoint()
        self._last_checkpoint_size = latest.size if latest else -1
        self._last_checkpoint_time = time.monotonic()
        self._last_ts = ""
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()
        self._timer = threading.Thread(target=self._tick, name="ledger-checkpoints", daemon=True)
        self._timer.start()

    # -- submitting -----------------------------------------------------------------------

    def submit(self, work: _Work[Any]) -> Future[tuple[Any, list[Receipt]]]:
        if self._stopped.is_set():
            raise StorageError("the ledger is closed")
        self._queue.put(work)
        return work.future

    def append(self, events: Sequence[PreparedEvent]) -> list[Receipt]:
        _, receipts = self.submit(_Work(events=events)).result()
        return receipts

    def transact(self, fn: WorkFn[T]) -> tuple[T, list[Receipt]]:
        result, receipts = self.submit_fn(fn).result()
        return result, receipts

    def submit_fn(self, fn: WorkFn[T]) -> Future[tuple[T, list[Receipt]]]:
        return self.submit(_Work(fn=fn))

    def checkpoint(self) -> None:
        self.submit(_Work(force_checkpoint=True)).result()

    def forget_subject(self, subject_ref: str) -> None:
        """Drop a cached key after its subject was erased (called from the writer thread)."""
        self._keys.pop(subject_ref, None)

    def close(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._queue.put(None)
        self._thread.join()
        self._timer.join(timeout=5)

    # -- the writer thread ----------------------------------------------------------------

    def _tick(self) -> None:
        interval = self._config.checkpoint_interval
        while not self._stopped.wait(min(interval, 1.0)):
            due = time.monotonic() - self._last_checkpoint_time >= interval
            if due and self._head is not None and self._head.size != self._last_checkpoint_size:
                try:
                    self.submit(_Work(force_checkpoint=True))
                except StorageError:
                    return

    def _drain(self, first: _Work[Any]) -> list[_Work[Any]]:
        batch = [first]
        count = len(first.events) + 1
        while count < self._config.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # keep the stop signal for the loop
                break
            batch.append(item)
            count += len(item.events) + 1
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._drain(first)
            try:
                outcomes = self._commit(batch)
            except BaseException as exc:  # the whole transaction failed: nothing was written
                self._head = None
                self._keys.clear()
                error = (
                    exc
                    if isinstance(exc, ChatLedgerError)
                    else StorageError(f"the ledger could not commit: {exc}")
                )
                for work in batch:
                    if not work.future.done():
                        work.future.set_exception(error)
                if not isinstance(exc, Exception):
                    raise
                continue
            for work, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    work.future.set_exception(outcome)
                else:
                    work.future.set_result(outcome)

    def _load_head(self, txn: WriteTxn) -> _Head:
        size, last = txn.head()
        cached = self._head
        if cached is not None and cached.size == size and cached.last == last:
            return cached
        # Another process appended (or we start): rebuild the frontier from stored nodes.
        # The subject keys held stay good unless one of its appends destroyed a key (an
        # erasure): a payload must never be sealed under a destroyed key.
        keys = merkle.frontier_keys(size)
        nodes = txn.fetch_nodes(keys)
        frontier = merkle.CompactRange(size, [nodes[k] for k in keys])
        if cached is None or size < cached.size or txn.keys_destroyed_since(cached.size):
            self._keys.clear()
        return _Head(size, last, frontier)

    def _commit(self, batch: list[_Work[Any]]) -> list[Any]:
        staged_keys: dict[str, tuple[str, AESGCM]] = {}
        with self._store.write() as txn:
            head = self._load_head(txn).copy()
            entries: list[EntryRow] = []
            nodes: list[tuple[int, int, bytes]] = []
            payloads: list[PayloadRow] = []
            outcomes: list[Any] = []
            force_checkpoint = False
            for work in batch:
                force_checkpoint |= work.force_checkpoint
                if work.fn is None:
                    outcomes.append(
                        (
                            None,
                            self._stage(
                                txn, head, work.events, entries, nodes, payloads, staged_keys
                            ),
                        )
                    )
                    continue
                txn.savepoint()
                mark = (head.copy(), len(entries), len(nodes), len(payloads), dict(staged_keys))
                try:
                    result, events = work.fn(WorkContext(txn, head.size))
                    prepared = [self.prepare(e) for e in events]
                    receipts = self._stage(
                        txn, head, prepared, entries, nodes, payloads, staged_keys
                    )
                except Exception as exc:
                    txn.rollback_savepoint()
                    head, n_e, n_n, n_p, staged_keys = mark
                    del entries[n_e:], nodes[n_n:], payloads[n_p:]
                    outcomes.append(exc)
                    continue
                txn.release_savepoint()
                outcomes.append((result, receipts))
            txn.insert_entries(entries)
            txn.insert_nodes(nodes)
            txn.insert_payloads(payloads)
            checkpoint = self._maybe_checkpoint(txn, head, force_checkpoint)
        self._head = head
        self._keys.update(staged_keys)
        if checkpoint is not None:
            self._last_checkpoint_size = checkpoint.size
            self._last_checkpoint_time = time.monotonic()
            if self._on_checkpoint is not None:
                self._on_checkpoint(checkpoint)
        return outcomes

    def prepare(self, event: Event) -> PreparedEvent:
        subject_ref = self._master.subject_ref(event.subject) if event.subject else None
        return PreparedEvent.prepare(
            event, subject_ref, max_payload_bytes=self._config.max_payload_bytes
        )

    def _key_for(
        self, txn: WriteTxn, subject_ref: str | None, staged: dict[str, tuple[str, AESGCM]]
    ) -> tuple[str, AESGCM]:
        ref = subject_ref or SYSTEM_KEY_REF
        found = staged.get(ref) or self._keys.get(ref)
        if found is not None:
            return found
        row = txn.live_subject_key(ref)
        if row is not None and row.wrapped is not None:
            found = (row.key_ref, AESGCM(self._master.unwrap(row.key_ref, row.wrapped)))
        else:
            key = AESGCM.generate_key(bit_length=256)
            key_ref = f"{ref}.{os.urandom(6).hex()}"
            txn.insert_subject_key(
                SubjectKeyRow(
                    key_ref, ref, self._master.wrap(key_ref, key), utc_timestamp(), None, None
                )
            )
            found = (key_ref, AESGCM(key))
        staged[ref] = found
        return found

    def _stage(
        self,
        txn: WriteTxn,
        head: _Head,
        events: Sequence[PreparedEvent],
        entries: list[EntryRow],
        nodes: list[tuple[int, int, bytes]],
        payloads: list[PayloadRow],
        staged_keys: dict[str, tuple[str, AESGCM]],
    ) -> list[Receipt]:
        receipts: list[Receipt] = []
        # Events committed together share the moment they were sequenced; timestamps never
        # go backwards along the log, even if the wall clock does.
        ts = max(utc_timestamp(), self._last_ts)
        self._last_ts = ts
        for prepared in events:
            seq = head.size
            prev = head.last.hex() if head.last is not None else GENESIS_PREV
            body = prepared.canonical_envelope(seq, ts, prev)
            leaf = merkle.leaf_hash(body)
            for level, index, digest in head.frontier.append(leaf):
                nodes.append((level, index, digest))
            head.size += 1
            head.last = leaf
            ev = prepared.event
            entries.append(
                EntryRow(
                    seq,
                    ts,
                    prepared.category,
                    ev.action,
                    ev.actor.id,
                    ev.entity.type,
                    ev.entity.id,
                    str(ev.outcome),
                    prepared.subject_ref,
                    _text_attr(prepared.attributes, "chatbot_id"),
                    _text_attr(prepared.attributes, "conversation_id"),
                    body,
                    leaf,
                    self._master.entry_mac(leaf),
                )
            )
            if prepared.payload is not None:
                key_ref, aead = self._key_for(txn, prepared.subject_ref, staged_keys)
                nonce, ciphertext = prepared.payload.seal(aead)
                payloads.append(PayloadRow(seq, key_ref, nonce, ciphertext))
            receipts.append(Receipt(seq, prepared.id, ts, leaf.hex()))
        return receipts

    def _maybe_checkpoint(self, txn: WriteTxn, head: _Head, force: bool) -> CheckpointRow | None:
        if head.size == 0 or head.size == self._last_checkpoint_size:
            return None
        due = head.size - max(self._last_checkpoint_size, 0) >= self._config.checkpoint_every
        if not (force or due):
            return None
        note = Checkpoint(self._config.origin, head.size, head.frontier.root()).sign(self._signer)
        row = CheckpointRow(head.size, utc_timestamp(), note)
        txn.insert_checkpoint(row)
        return row


def _text_attr(attributes: dict[str, Any], name: str) -> str | None:
    """A string attribute copied into an indexed column (verification checks the copy)."""
    value = attributes.get(name)
    return value if isinstance(value, str) else None
