"""Full verification of a stored ledger.

Checks, in one pass in seq order: (1) no entry is missing, inserted or reordered; (2) each
entry's hash matches the hash recorded when it was written and the hash its successor links
to; (3) the columns that search uses agree with the hashed body; (4) the entry carries this
deployment's authentication code; (5) the stored tree nodes (used for proofs) agree with the
entries; (6) every payload matches the digest its entry commits to, or was removed by a
recorded erasure. Then (7) every stored checkpoint and any checkpoint held elsewhere is
correctly signed and matches the recomputed tree: a log shorter than a checkpoint was
truncated or rolled back.

It reports the first bad entry by seq and a stable reason code.

The scan is cut into ranges of seqs aligned to powers of two (:class:`RangeCheck`): a
range's entries, payloads and stored nodes can be checked on their own, given the two leaf
hashes before it, and yield the hashes of the range's complete subtrees. A small ledger is
one range checked here; a large one is checked by worker processes
(:mod:`chatledger.ledger.verify_parallel`) and the ranges' results merged in seq order
(:class:`Merge`), which gives the same report as the single range.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatledger.errors import ChatLedgerError, IntegrityError, InvalidInput
from chatledger.ledger import merkle
from chatledger.ledger.entry import ENTRY_VERSION, GENESIS_PREV
from chatledger.ledger.note import NoteVerifier, open_checkpoint
from chatledger.privacy.keys import MasterSecret
from chatledger.privacy.payloads import check_payload
from chatledger.store.base import CheckpointRow, ErasureRow, Store

Progress = Callable[[int, int], None]
BATCH = 4096
"""Entries per read and per comparison of stored nodes: a power of two, so that the batches
of a range aligned to a larger power of two are the batches of a scan from 0."""
PARALLEL_MIN = 100_000
"""Below this many entries, starting worker processes costs more than it saves: 0.5 to 2 s
(see :mod:`chatledger.ledger.verify_parallel`), against some 15 us per entry saved by a
second core."""
_MAX_PROBLEMS = 50
_LEAF_PREFIX = merkle.LEAF_PREFIX

Problem = tuple[str, str, int | None, dict[str, Any]]
"""message, reason, seq, details: an :class:`IntegrityError` as plain (picklable) data."""

KeyMaterial = tuple[bytes | BaseException | None, str]
"""A subject key unwrapped (None: destroyed; the exception unwrapping raised) and the
subject it belongs to."""

# Entry tuples (Store.entry_batches) in EntryRow's field order.
_SEQ, _BODY, _LEAF, _MAC = 0, 11, 12, 13


@dataclass(frozen=True)
class Tuning:
    """How the work is cut; the report does not depend on it (tests force small values)."""

    batch: int = BATCH
    parallel_min: int = PARALLEL_MIN
    range_size: int | None = None
    """Entries per worker task (a power of two, a multiple of ``batch``); None: about four
    tasks per worker."""


@dataclass
class VerifyReport:
    ok: bool
    size: int
    root: str
    checkpoints_checked: int = 0
    payloads_checked: int = 0
    payloads_erased: int = 0
    external_checkpoint_size: int | None = None
    problems: list[IntegrityError] = field(default_factory=list)
    start: int = 0
    """The first seq checked: 0, or where an archived prefix ends (see ``verify_store``)."""
    checkpoints_skipped: int = 0
    """Checkpoints older than ``start``: signature checked, root not (their leaves are gone)."""

    @property
    def first_problem(self) -> IntegrityError | None:
        if not self.problems:
            return None
        with_seq = [p for p in self.problems if p.seq is not None]
        return min(with_seq, key=lambda p: p.seq or 0) if with_seq else self.problems[0]

    def to_json(self) -> dict[str, Any]:
        first = self.first_problem
        return {
            "ok": self.ok,
            "tree_size": self.size,
            "root": self.root,
            "checkpoints_checked": self.checkpoints_checked,
            "payloads_checked": self.payloads_checked,
            "payloads_erased": self.payloads_erased,
            "external_checkpoint_size": self.external_checkpoint_size,
            "from_seq": self.start,
            "checkpoints_skipped": self.checkpoints_skipped,
            "first_bad_seq": first.seq if first else None,
            "reason": first.reason if first else None,
            "message": first.message if first else None,
            "problems": [p.to_dict()["details"] | {"message": p.message} for p in self.problems],
        }


class _Problems:
    def __init__(self) -> None:
        self.items: list[IntegrityError] = []

    def add(self, message: str, reason: str, seq: int | None = None, **details: Any) -> None:
        if len(self.items) < _MAX_PROBLEMS:
            self.items.append(IntegrityError(message, reason=reason, seq=seq, details=details))

    def extend(self, found: Sequence[Problem]) -> None:
        for message, reason, seq, details in found:
            self.add(message, reason, seq, **details)


# -- secrets --------------------------------------------------------------------------------

_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_PROBE = bytes(range(32))


class EntryMac:
    """HMAC-SHA256 (RFC 2104) under the entry MAC key, with the padded key's hash states
    computed once: ``hmac.digest`` sets up an OpenSSL MAC context per call, which costs more
    than twice the hashing."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._inner = hashlib.sha256(block.translate(_IPAD))
        self._outer = hashlib.sha256(block.translate(_OPAD))

    def __call__(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def entry_mac_key(master: MasterSecret) -> bytes | None:
    """The derived entry MAC key, if it gives ``master.entry_mac``'s codes (checked on a
    probe, so that a change in how entries are authenticated cannot go unseen here)."""
    key = master.entry_mac_key
    if EntryMac(key)(_PROBE) == master.entry_mac(_PROBE):
        return key
    return None


def subject_key_table(store: Store, master: MasterSecret | None) -> dict[str, KeyMaterial]:
    """Every subject key, unwrapped, for checkers that cannot reach the master secret (one
    small row per data subject, sent once to each worker). A key that fails to unwrap keeps
    its exception: raised where a payload needs it and reported there, as the single-process
    scan does."""
    table: dict[str, KeyMaterial] = {}
    for row in store.subject_keys():
        material: bytes | BaseException | None = None
        if row.wrapped is not None and master is not None:
            try:
                material = master.unwrap(row.key_ref, row.wrapped)
            except IntegrityError as exc:  # re-raised where a payload needs the key
                material = ValueError(exc.message)  # (picklable, for worker processes)
        table[row.key_ref] = (material, row.subject_ref)
    return table


# -- one range ------------------------------------------------------------------------------


class PayloadChecker:
    """Payloads against their entries' digests. Keys come from the store (unwrapped with
    ``master``) or, in a worker process, from a table the parent unwrapped."""

    def __init__(
        self,
        store: Store,
        master: MasterSecret | None,
        erased: Collection[int],
        table: dict[str, KeyMaterial] | None = None,
        *,
        keys_known: bool | None = None,
    ) -> None:
        self.store = store
        self.master = master
        self.erased_seqs = erased
        self.table = table
        self.keys_known = master is not None if keys_known is None else keys_known
        """Whether the master secret was at hand (only then is a destroyed key a finding)."""
        self._keys: dict[str, tuple[AESGCM | None, str | None]] = {}
        self.checked = 0
        self.erased = 0

    def _material(self, key_ref: str) -> tuple[bytes | None, str | None]:
        if self.table is not None:
            found = self.table.get(key_ref)
            if found is None:
                return None, None
            if isinstance(found[0], BaseException):
                raise found[0]
            return found[0], found[1]
        row = self.store.subject_key(key_ref)
        if row is None:
            return None, None
        if row.wrapped is None or self.master is None:
            return None, row.subject_ref
        return self.master.unwrap(key_ref, row.wrapped), row.subject_ref

    def key(self, key_ref: str) -> tuple[AESGCM | None, str | None]:
        """The key (None if destroyed) and the subject it belongs to (None if unknown)."""
        found = self._keys.get(key_ref)
        if found is None:
            raw, subject_ref = self._material(key_ref)
            found = (AESGCM(raw) if raw is not None else None, subject_ref)
            self._keys[key_ref] = found
        return found

    def check(
        self, entry: _Parsed, payload: tuple[Any, ...] | None, problems: list[Problem]
    ) -> None:
        seq = entry.seq
        if entry.payload_digest is None:
            if payload is not None:
                _add(
                    problems,
                    "a payload is stored for an entry that commits to none",
                    "unexpected_payload",
                    seq,
                )
            return
        if payload is None:
            if seq in self.erased_seqs:
                self.erased += 1
                return
            _add(
                problems,
                "the entry's payload is gone and no erasure records its removal",
                "payload_missing",
                seq,
            )
            return
        try:
            aead, subject_ref = self.key(payload[1])
        except (IntegrityError, InvalidTag, ValueError):
            _add(
                problems,
                "the payload's key does not unwrap with this data directory's master secret: "
                "the stored key was altered, or this is another deployment's data directory",
                "payload_key_unreadable",
                seq,
            )
            return
        if subject_ref is None:
            _add(problems, "the payload's key is unknown", "payload_key_missing", seq)
            return
        if subject_ref != (entry.subject or "system"):
            _add(
                problems,
                "the payload is sealed under another subject's key",
                "payload_wrong_key",
                seq,
            )
            return
        if aead is None:
            if self.keys_known and seq not in self.erased_seqs:
                _add(
                    problems,
                    "the payload's key was destroyed without a recorded erasure",
                    "payload_key_destroyed",
                    seq,
                )
            self.erased += 1
            return
        try:
            check_payload(aead, payload[2], payload[3], entry.payload_digest, seq)
        except IntegrityError as exc:
            _add(problems, exc.message, exc.reason, seq)
            return
        self.checked += 1


def _add(
    problems: list[Problem], message: str, reason: str, seq: int | None, **details: Any
) -> None:
    if len(problems) < _MAX_PROBLEMS:
        problems.append((message, reason, seq, details))


@dataclass
class RangeResult:
    """What checking the entries ``[start, end)`` found (plain data: it crosses processes)."""

    start: int
    end: int
    verified: int
    """The first seq not verified (``end`` when the whole range is)."""
    stopped: bool
    """A problem, or the end of the stored rows, stopped the scan at ``verified``."""
    problems: list[Problem]
    hashes: list[bytes]
    """The complete subtrees of ``[start, verified)``, largest first."""
    roots: dict[int, list[bytes]]
    """For each wanted tree size in the range, the complete subtrees of ``[start, size)``."""
    privacy_seqs: list[int]
    payloads_checked: int
    payloads_erased: int
    first_seq: int | None
    """The first stored seq found in the range (None: none was)."""
    gap_at: int | None = None
    """The stored rows ran out at ``verified``: the index in ``problems`` where the missing
    entry belongs, once the merge knows the next stored seq."""
    last_batch_node_problem: bool = False
    """The last batch compared found a bad node (so nodes above the range go unreported,
    as in a single scan, which reports one bad node per batch)."""
    error: BaseException | None = None
    """What checking the range raised (a single scan raises it too, if it gets there)."""


class RangeCheck:
    """Checks the entries ``[start, end)``; ``start`` is 0 or a multiple of a power of two at
    least ``end - start``, so that the subtrees inside the range are subtrees of the tree."""

    def __init__(
        self,
        store: Store,
        start: int,
        end: int,
        *,
        mac: Callable[[bytes], bytes] | None,
        payloads: PayloadChecker | None,
        wanted: Collection[int],
        batch: int = BATCH,
        progress: Progress | None = None,
        total: int = 0,
    ) -> None:
        self.store = store
        self.start = start
        self.end = end
        self.mac = mac
        self.payloads = payloads
        self.wanted = sorted(s for s in wanted if start < s <= end)
        self.batch = batch
        self.progress = progress
        self.total = total
        self.problems: list[Problem] = []
        self.tops = merkle.CompactRange()  # local: its leaf 0 is ``start``
        self.roots: dict[int, list[bytes]] = {}
        self.privacy_seqs: list[int] = []
        self.expected = start
        self.prev: bytes | None = None
        self.prev2: bytes | None = None
        self.first_seq: int | None = None
        self.node_problem = False
        self._payload_rows: Iterator[tuple[Any, ...]] = iter(())
        self._next_payload: tuple[Any, ...] | None = None

    def run(self, prev: bytes | None, prev2: bytes | None) -> RangeResult:
        """``prev`` and ``prev2``: the leaf hashes of the two entries before ``start``."""
        self.prev, self.prev2 = prev, prev2
        if self.payloads is not None:
            batches = self.store.payload_batches(self.start, self.end, batch=self.batch)
            self._payload_rows = chain.from_iterable(batches)
            self._next_payload = next(self._payload_rows, None)
        gap_at = None
        stopped = False
        batches = self.store.entry_batches(self.start, self.end, batch=self.batch)
        for rows in batches:
            pos = self.expected
            if rows and self.first_seq is None:
                self.first_seq = int(rows[0][_SEQ])
            leaves: list[bytes] = []
            stopped = self._rows(rows, leaves)
            hi = min(self.end, pos + self.batch)
            if not stopped and self.expected < hi:  # the rows ran out inside the batch
                stopped = True
                gap_at = self._gap(batches)
            self._close_batch(pos, leaves)
            if stopped:
                break
        checker = self.payloads
        return RangeResult(
            start=self.start,
            end=self.end,
            verified=self.expected,
            stopped=stopped,
            problems=self.problems,
            hashes=self.tops.hashes(),
            roots=self.roots,
            privacy_seqs=self.privacy_seqs,
            payloads_checked=checker.checked if checker else 0,
            payloads_erased=checker.erased if checker else 0,
            first_seq=self.first_seq,
            gap_at=gap_at,
            last_batch_node_problem=self.node_problem,
        )

    def _gap(self, batches: Iterator[list[tuple[Any, ...]]]) -> int | None:
        """Entry ``expected`` is missing: name the next stored one if the range holds it,
        else leave the place of the problem for the merge to fill."""
        for rows in batches:
            if rows:
                if self.first_seq is None:
                    self.first_seq = int(rows[0][_SEQ])
                self._missing(int(rows[0][_SEQ]))
                return None
        return len(self.problems)

    def _missing(self, found: int) -> None:
        _add(
            self.problems,
            f"entry {self.expected} is missing (the next stored entry is {found})",
            "entry_missing",
            self.expected,
        )

    def _rows(self, rows: list[tuple[Any, ...]], leaves: list[bytes]) -> bool:
        """Check consecutive entries; True when a problem stops the scan."""
        sha256 = hashlib.sha256
        mac, payloads, problems = self.mac, self.payloads, self.problems
        for row in rows:
            seq = row[_SEQ]
            if seq != self.expected:
                self._missing(seq)
                return True
            body = row[_BODY]
            if type(body) is not bytes:
                body = as_bytes(body)
            leaf = sha256(_LEAF_PREFIX + body).digest()
            entry = _check_entry(row, body, leaf, self.prev, self.prev2, problems)
            if entry is None:
                return True
            code = row[_MAC]
            if type(code) is not bytes:
                code = as_bytes(code)
            if mac is not None and not hmac.compare_digest(code, mac(leaf)):
                _add(
                    problems,
                    f"entry {seq} was not written by this ledger: its authentication code is "
                    "wrong (a forged or re-hashed entry)",
                    "entry_forged",
                    seq,
                )
            if entry.category == "privacy":
                self.privacy_seqs.append(seq)
            if payloads is not None:
                self._payload(entry, payloads)
            leaves.append(leaf)
            self.prev2, self.prev = self.prev, leaf
            self.expected += 1
        return False

    def _payload(self, entry: _Parsed, checker: PayloadChecker) -> None:
        seq = entry.seq
        found = self._next_payload
        while found is not None and found[0] < seq:
            _add(self.problems, "a payload is stored for no entry", "orphan_payload", found[0])
            found = next(self._payload_rows, None)
        current = found if found is not None and found[0] == seq else None
        checker.check(entry, current, self.problems)
        if current is not None:
            found = next(self._payload_rows, None)
        self._next_payload = found

    def _close_batch(self, pos: int, leaves: list[bytes]) -> None:
        """Record the wanted roots, compare the nodes the batch completes, extend the range."""
        if not leaves:
            return
        levels = merkle.subtree_levels(leaves)
        for size in self.wanted:
            if pos < size <= pos + len(leaves):
                upto = self.tops.copy()
                for level, digest in merkle.prefix_subtrees(levels, size - pos):
                    upto.append_subtree(level, digest)
                self.roots[size] = upto.hashes()
        computed = [(lvl, pos >> lvl, levels[lvl]) for lvl in range(1, len(levels))]
        for level, digest in merkle.prefix_subtrees(levels, len(leaves)):
            for lvl, idx, h in self.tops.append_subtree_nodes(level, digest):
                computed.append((lvl, (self.start >> lvl) + idx, [h]))
        self.node_problem = compare_nodes(self.store, computed, self.problems)
        if self.progress:
            self.progress(self.expected, self.total)


def compare_nodes(
    store: Store, computed: Sequence[tuple[int, int, list[bytes]]], problems: list[Problem]
) -> bool:
    """Compare runs ``(level, first index, hashes)`` with the stored nodes, lowest level
    first; report the first that differs (a node covers many entries: the entry checks name
    the culprit). True when one did."""
    for level, lo, hashes in computed:
        if not hashes:
            continue
        stored = dict(store.nodes(level, lo, lo + len(hashes)))
        # In index order and as many as computed: the same indexes, so compare in bulk.
        if len(stored) == len(hashes) and list(stored.values()) == hashes:
            continue
        for index, digest in enumerate(hashes, lo):
            if stored.get(index) != digest:
                if len(problems) < _MAX_PROBLEMS:
                    problems.append(_node_problem(level, index))
                return True
    return False


def _node_problem(level: int, index: int) -> tuple[str, str, None, dict[str, Any]]:
    first = index << level
    last = first + (1 << level) - 1
    return (
        f"stored tree node (level {level}, index {index}) does not match entries "
        f"{first}..{last}: proofs served from it would be wrong",
        "node_mismatch",
        None,
        {"first_seq": first, "last_seq": last},
    )


def as_bytes(value: object) -> bytes:
    """Blobs an attacker rewrote as text (SQLite's replace() returns TEXT) still get checked."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


class _Parsed:
    """The fields verification needs, read straight from the entry's JSON (a full
    :class:`Entry` per row costs more than the hashing)."""

    __slots__ = (
        "action",
        "actor",
        "attributes",
        "category",
        "entity",
        "outcome",
        "payload_digest",
        "prev",
        "seq",
        "subject",
        "ts",
    )

    def __init__(self, body: bytes) -> None:
        data = orjson.loads(body)
        if not isinstance(data, dict) or data.get("v") != ENTRY_VERSION:
            raise ValueError("not a version 1 entry")
        self.seq = int(data["seq"])
        self.prev = str(data["prev"])
        self.ts = data["ts"]
        self.category = data["category"]
        self.action = data["action"]
        self.actor = data["actor"]
        self.entity = data["entity"]
        self.outcome = data["outcome"]
        self.subject = data.get("subject")
        self.attributes = data["attributes"]
        payload = data.get("payload")
        self.payload_digest = payload["digest"] if isinstance(payload, dict) else None


def _check_entry(
    row: tuple[Any, ...],
    body: bytes,
    leaf: bytes,
    prev_leaf: bytes | None,
    prev2_leaf: bytes | None,
    problems: list[Problem],
) -> _Parsed | None:
    seq: int = row[_SEQ]
    try:
        entry = _Parsed(body)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        _add(problems, f"entry is not a well-formed ledger entry: {exc}", "malformed_entry", seq)
        return None
    expected_prev = prev_leaf.hex() if prev_leaf is not None else GENESIS_PREV
    if entry.prev != expected_prev:
        _chain_problem(entry, seq, prev2_leaf, problems)
        return None
    if entry.seq != seq:
        _add(
            problems,
            f"position {seq} holds an entry that says it is seq {entry.seq}",
            "seq_mismatch",
            seq,
        )
        return None
    recorded = row[_LEAF]
    if type(recorded) is not bytes:
        recorded = as_bytes(recorded)
    if not hmac.compare_digest(recorded, leaf):
        _add(
            problems,
            f"entry {seq} was altered: its hash no longer matches the one recorded when it "
            "was written",
            "leaf_hash_mismatch",
            seq,
        )
        return None
    attrs = entry.attributes
    chatbot, conversation = attrs.get("chatbot_id"), attrs.get("conversation_id")
    from_body = (
        entry.ts,
        entry.category,
        entry.action,
        entry.actor.get("id"),
        entry.entity.get("type"),
        entry.entity.get("id"),
        entry.outcome,
        entry.subject,
        chatbot if isinstance(chatbot, str) else None,
        conversation if isinstance(conversation, str) else None,
    )
    if row[1:11] != from_body:
        _add(
            problems,
            f"entry {seq}'s search columns disagree with its hashed body",
            "index_tampered",
            seq,
        )
    return entry


def _chain_problem(
    entry: _Parsed, seq: int, prev2_leaf: bytes | None, problems: list[Problem]
) -> None:
    if prev2_leaf is not None and entry.prev == prev2_leaf.hex():
        _add(
            problems,
            f"entry {seq - 1} does not belong between its neighbours: a forged entry was inserted",
            "entry_inserted",
            seq - 1,
        )
    elif entry.seq != seq:
        _add(
            problems,
            f"position {seq} holds the entry that says it is seq {entry.seq}: entries were "
            "deleted, inserted or reordered",
            "seq_mismatch",
            seq,
        )
    else:
        _add(
            problems,
            f"entry {seq - 1} was altered: its hash is not the one entry {seq} links to",
            "chain_broken",
            seq - 1,
        )


# -- merging ranges -------------------------------------------------------------------------


class Merge:
    """Folds range results, in seq order, into one scan's outcome."""

    def __init__(self, store: Store, problems: _Problems) -> None:
        self.store = store
        self.problems = problems
        self.frontier = merkle.CompactRange()
        self.roots: dict[int, bytes] = {}
        self.privacy_seqs: set[int] = set()
        self.checked = 0
        self.erased = 0
        self.done = False

    def add(self, result: RangeResult, next_stored: Callable[[], int | None]) -> None:
        """Take the next range's result; ``next_stored`` finds the first stored seq after
        it (needed only when the range's rows ran out)."""
        if result.error is not None:
            raise result.error
        for size, hashes in result.roots.items():
            self.roots[size] = self._extended(self.frontier.copy(), hashes, size - result.start)
        found = result.problems
        if result.gap_at is None:
            self.problems.extend(found)
        else:
            self.problems.extend(found[: result.gap_at])
            following = next_stored()
            if following is not None:
                self.problems.add(
                    f"entry {result.verified} is missing (the next stored entry is {following})",
                    "entry_missing",
                    result.verified,
                )
            self.problems.extend(found[result.gap_at :])
        completed = self._extend(result.hashes, result.verified - result.start)
        if completed and not result.last_batch_node_problem:
            self._compare_high(completed)
        self.privacy_seqs.update(result.privacy_seqs)
        self.checked += result.payloads_checked
        self.erased += result.payloads_erased
        self.done = result.stopped

    @staticmethod
    def _extended(frontier: merkle.CompactRange, hashes: list[bytes], count: int) -> bytes:
        for level, digest in zip(_levels(count), hashes, strict=True):
            frontier.append_subtree(level, digest)
        return frontier.root()

    def _extend(self, hashes: list[bytes], count: int) -> list[tuple[int, int, bytes]]:
        completed: list[tuple[int, int, bytes]] = []
        for level, digest in zip(_levels(count), hashes, strict=True):
            completed += self.frontier.append_subtree_nodes(level, digest)
        return completed

    def _compare_high(self, completed: list[tuple[int, int, bytes]]) -> None:
        """Nodes above a range, completed by its last entry (the same batch's nodes in a
        single scan, compared after the range's own)."""
        stored = self.store.fetch_nodes([(level, index) for level, index, _ in completed])
        for level, index, digest in completed:
            if stored.get((level, index)) != digest:
                self.problems.extend([_node_problem(level, index)])
                return


def _levels(count: int) -> list[int]:
    """The levels of the complete subtrees of ``count`` leaves, largest first."""
    return [lvl for lvl in range(count.bit_length() - 1, -1, -1) if count >> lvl & 1]


# -- the whole ledger -----------------------------------------------------------------------


def verify_store(
    store: Store,
    verifier: NoteVerifier,
    origin: str,
    *,
    master: MasterSecret | None = None,
    external_checkpoint: str | None = None,
    progress: Progress | None = None,
    check_payloads: bool = True,
    jobs: int = 0,
    tuning: Tuning | None = None,
    start: int = 0,
) -> VerifyReport:
    """``jobs``: processes checking a large ledger, this one included (0: one per CPU; 1:
    this one alone). The report does not depend on it.

    ``start``: check the entries from this seq on, when the ones before it went to an archive
    (detached partitions). The tree above them comes from the stored nodes, trusted only as
    far as the signed checkpoints at or after ``start`` prove them: every such checkpoint's
    root is recomputed from those nodes and the entries checked, and without one the report
    fails (``start_unanchored``). The first entry's link to the archived one is its own claim,
    covered by the same roots. Older checkpoints get their signatures checked only."""
    tuning = tuning or Tuning()
    problems = _Problems()
    size = store.size()
    if not 0 <= start <= size:
        raise InvalidInput(
            f"cannot verify from seq {start}: the log has {size} entries",
            details={"start": start, "size": size},
        )
    checkpoints = store.checkpoints()
    wanted = {c.size for c in checkpoints}
    external = None
    if external_checkpoint is not None:
        try:
            external = open_checkpoint(external_checkpoint, verifier, origin)
            wanted.add(external.size)
        except ChatLedgerError as exc:
            reason = getattr(exc, "reason", "bad_checkpoint")
            problems.add(f"the checkpoint held elsewhere is invalid: {exc.message}", reason)
    erasures = store.payload_erasures() if check_payloads else {}
    merge = Merge(store, problems)
    if start:
        merge.frontier = _prefix(store, start)
        merge.roots[start] = merge.frontier.root()
        erasures = {seq: row for seq, row in erasures.items() if seq >= start}
    workers = 1 if start else _workers(jobs, size, tuning)
    mac_key = entry_mac_key(master) if master is not None else None
    parallel = False
    if workers > 1:
        from chatledger.ledger.verify_parallel import ParallelPlan, run_parallel

        plan = ParallelPlan(workers, size, wanted, set(erasures), check_payloads, tuning)
        parallel = run_parallel(store, master, mac_key, plan, merge, progress)
    if not parallel:
        checker = PayloadChecker(store, master, erasures) if check_payloads else None
        prev = _claimed_prev(store, start) if start else None
        prev2 = None
        for lo, hi in _aligned_ranges(start, size):
            if checker is not None:  # each range reports its own counts; keys stay cached
                checker.checked = checker.erased = 0
            scan = RangeCheck(
                store,
                lo,
                hi,
                mac=_entry_mac(master, mac_key),
                payloads=checker,
                wanted=wanted,
                batch=tuning.batch,
                progress=progress,
                total=size,
            )
            merge.add(scan.run(prev, prev2), functools.partial(_first_stored, store, hi, size))
            if merge.done:
                break
            prev, prev2 = scan.prev, scan.prev2
    verified_size = merge.frontier.size
    if progress:
        progress(verified_size, size)
    _check_erasures(erasures, merge.privacy_seqs, problems, verified_size, size)
    held = (external_checkpoint or "", external.size) if external is not None else None
    checked, skipped = _check_checkpoints(
        checkpoints, held, verifier, origin, verified_size, merge.roots, problems, start
    )
    if start and not checked:
        problems.add(
            f"no checkpoint at or after seq {start} proves the archived entries' tree: "
            "verifying from there proves nothing about them",
            "start_unanchored",
            start,
        )
    return VerifyReport(
        ok=not problems.items,
        size=verified_size,
        root=merge.frontier.root().hex(),
        checkpoints_checked=checked,
        payloads_checked=merge.checked,
        payloads_erased=merge.erased,
        external_checkpoint_size=external.size if external else None,
        problems=problems.items,
        start=start,
        checkpoints_skipped=skipped,
    )


def _aligned_ranges(start: int, size: int) -> list[tuple[int, int]]:
    """``[start, size)`` cut where :class:`RangeCheck` needs it: each range starts at 0 or at
    a multiple of a power of two at least as long as the range."""
    ranges: list[tuple[int, int]] = []
    lo = start
    while lo < size:
        step = lo & -lo
        if lo == 0 or lo + step >= size:
            ranges.append((lo, size))
            break
        ranges.append((lo, lo + step))
        lo += step
    return ranges


def _prefix(store: Store, start: int) -> merkle.CompactRange:
    """The tree of the first ``start`` entries, from its stored perfect subtrees (a single
    leaf, for an odd ``start``, from its entry's body)."""
    keys = merkle.frontier_keys(start)
    found = store.fetch_nodes([k for k in keys if k[0] > 0])
    if keys and keys[-1][0] == 0:
        rows = next(store.entry_batches(start - 1, start, batch=1), [])
        if rows:
            found[keys[-1]] = merkle.leaf_hash(as_bytes(rows[0][_BODY]))
    missing = [k for k in keys if k not in found]
    if missing:
        level, index = missing[0]
        raise InvalidInput(
            f"cannot verify from seq {start}: the tree node (level {level}, index {index}) "
            "that covers the entries before it is not stored",
            details={"start": start, "level": level, "index": index},
        )
    return merkle.CompactRange(start, [found[k] for k in keys])


def _claimed_prev(store: Store, start: int) -> bytes | None:
    """The link the entry at ``start`` claims to its predecessor (None if it is missing or
    malformed: the scan then reports it as it would anyway)."""
    rows = next(store.entry_batches(start, start + 1, batch=1), [])
    if not rows:
        return None
    try:
        return bytes.fromhex(str(orjson.loads(as_bytes(rows[0][_BODY]))["prev"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _first_stored(store: Store, after: int, size: int) -> int | None:
    """The first seq stored in ``[after, size)``."""
    for rows in store.entry_batches(after, size, batch=BATCH):
        if rows:
            return int(rows[0][_SEQ])
    return None


def _entry_mac(master: MasterSecret | None, key: bytes | None) -> Callable[[bytes], bytes] | None:
    if master is None:
        return None
    return EntryMac(key) if key is not None else master.entry_mac


def _check_erasures(
    erasures: dict[int, ErasureRow],
    privacy_seqs: Collection[int],
    problems: _Problems,
    verified: int,
    size: int,
) -> None:
    """Each payload erasure must cite a privacy event after the entry it erased. When a
    problem stopped the scan at ``verified``, an erasure citing an entry from there on can
    be judged neither way (that entry was not checked): reporting it would name an intact
    entry before the one that stopped the scan."""
    for seq, erasure in erasures.items():
        if verified < size and erasure.erasure_seq >= verified:
            continue
        if erasure.erasure_seq not in privacy_seqs or erasure.erasure_seq <= seq:
            problems.add(
                f"payload erasure of {seq} cites {erasure.erasure_seq}, "
                "which is no erasure event after it",
                "forged_erasure",
                seq,
            )


def _workers(jobs: int, size: int, tuning: Tuning) -> int:
    """Worker processes worth starting: none for a small ledger or a single CPU."""
    if jobs < 0:
        raise ValueError("jobs must be 0 (one per CPU) or more")
    count = jobs or _cpus()
    return count if count > 1 and size >= max(tuning.parallel_min, 2) else 1


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _check_checkpoints(
    checkpoints: list[CheckpointRow],
    held: tuple[str, int] | None,
    verifier: NoteVerifier,
    origin: str,
    verified_size: int,
    roots: dict[int, bytes],
    problems: _Problems,
    start: int = 0,
) -> tuple[int, int]:
    """(checked, skipped): checkpoints older than ``start`` have only their signature
    checked."""
    checked = skipped = 0
    notes = [(cp.note, cp.size, "stored") for cp in checkpoints]
    if held is not None:
        notes.append((*held, "held elsewhere"))
    for note, size, where in notes:
        if size < start:
            skipped += 1
            _check_signature(note, size, verifier, origin, problems, where)
            continue
        checked += 1
        _check_checkpoint(note, size, verifier, origin, verified_size, roots, problems, where)
    return checked, skipped


def _check_signature(
    note: str, size: int, verifier: NoteVerifier, origin: str, problems: _Problems, where: str
) -> None:
    try:
        open_checkpoint(note, verifier, origin)
    except ChatLedgerError as exc:
        problems.add(
            f"{where} checkpoint of size {size}: {exc.message}",
            getattr(exc, "reason", "bad_checkpoint"),
            checkpoint_size=size,
        )


def _check_checkpoint(
    note: str,
    size: int,
    verifier: NoteVerifier,
    origin: str,
    verified_size: int,
    roots: dict[int, bytes],
    problems: _Problems,
    where: str,
) -> None:
    try:
        checkpoint = open_checkpoint(note, verifier, origin)
    except ChatLedgerError as exc:
        problems.add(
            f"{where} checkpoint of size {size}: {exc.message}",
            getattr(exc, "reason", "bad_checkpoint"),
            checkpoint_size=size,
        )
        return
    if checkpoint.size > verified_size:
        problems.add(
            f"the log has {verified_size} valid entries but a {where} checkpoint commits to "
            f"{checkpoint.size}: the log was truncated or rolled back",
            "log_truncated",
            verified_size,
            checkpoint_size=checkpoint.size,
        )
        return
    if roots.get(checkpoint.size) != checkpoint.root:
        problems.add(
            f"the {where} checkpoint of size {checkpoint.size} does not match the log: "
            "history before it was rewritten",
            "checkpoint_root_mismatch",
            None,
            checkpoint_size=checkpoint.size,
        )
