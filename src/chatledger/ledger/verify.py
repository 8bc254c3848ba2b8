"""Full verification of a stored ledger.

Checks, in one pass in seq order: (1) no entry is missing, inserted or reordered; (2) each
entry's hash matches the hash recorded when it was written and the hash its successor links
to; (3) the columns that search uses agree with the hashed body; (4) the stored tree nodes
(used for proofs) agree with the entries; (5) every payload matches the digest its entry
commits to, or was removed by a recorded erasure. Then (6) every stored checkpoint and any
checkpoint held elsewhere is correctly signed and matches the recomputed tree: a log shorter
than a checkpoint was truncated or rolled back.

It reports the first bad entry by seq and a stable reason code.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatledger.errors import ChatLedgerError, IntegrityError
from chatledger.ledger import merkle
from chatledger.ledger.entry import ENTRY_VERSION, GENESIS_PREV
from chatledger.ledger.note import NoteVerifier, open_checkpoint
from chatledger.privacy.keys import MasterSecret
from chatledger.privacy.payloads import check_payload
from chatledger.store.base import EntryRow, ErasureRow, PayloadRow, Store

Progress = Callable[[int, int], None]
_BATCH = 5000
_MAX_PROBLEMS = 50


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


class _PayloadChecker:
    def __init__(self, store: Store, master: MasterSecret | None) -> None:
        self.store = store
        self.master = master
        self.erasures: dict[int, ErasureRow] = store.payload_erasures()
        self._keys: dict[str, tuple[AESGCM | None, str | None]] = {}
        self.checked = 0
        self.erased = 0

    def key(self, key_ref: str) -> tuple[AESGCM | None, str | None]:
        """The key (None if destroyed) and the subject it belongs to (None if unknown)."""
        found = self._keys.get(key_ref)
        if found is None:
            row = self.store.subject_key(key_ref)
            if row is None:
                found = (None, None)
            elif row.wrapped is None or self.master is None:
                found = (None, row.subject_ref)
            else:
                found = (AESGCM(self.master.unwrap(key_ref, row.wrapped)), row.subject_ref)
            self._keys[key_ref] = found
        return found

    def check(self, entry: _Parsed, payload: PayloadRow | None, problems: _Problems) -> None:
        seq = entry.seq
        if entry.payload_digest is None:
            if payload is not None:
                problems.add(
                    "a payload is stored for an entry that commits to none",
                    "unexpected_payload",
                    seq,
                )
            return
        if payload is None:
            if seq in self.erasures:
                self.erased += 1
                return
            problems.add(
                "the entry's payload is gone and no erasure records its removal",
                "payload_missing",
                seq,
            )
            return
        aead, subject_ref = self.key(payload.key_ref)
        if subject_ref is None:
            problems.add("the payload's key is unknown", "payload_key_missing", seq)
            return
        if subject_ref != (entry.subject or "system"):
            problems.add(
                "the payload is sealed under another subject's key", "payload_wrong_key", seq
            )
            return
        if aead is None:
            if self.master is not None and seq not in self.erasures:
                problems.add(
                    "the payload's key was destroyed without a recorded erasure",
                    "payload_key_destroyed",
                    seq,
                )
            self.erased += 1
            return
        try:
            check_payload(aead, payload.nonce, payload.ciphertext, entry.payload_digest, seq)
        except IntegrityError as exc:
            problems.add(exc.message, exc.reason, seq)
            return
        self.checked += 1


def verify_store(
    store: Store,
    verifier: NoteVerifier,
    origin: str,
    *,
    master: MasterSecret | None = None,
    external_checkpoint: str | None = None,
    progress: Progress | None = None,
    check_payloads: bool = True,
) -> VerifyReport:
    problems = _Problems()
    size = store.size()
    checkpoints = store.checkpoints()
    wanted_roots = {c.size for c in checkpoints}
    external = None
    if external_checkpoint is not None:
        try:
            external = open_checkpoint(external_checkpoint, verifier, origin)
            wanted_roots.add(external.size)
        except ChatLedgerError as exc:
            reason = getattr(exc, "reason", "bad_checkpoint")
            problems.add(f"the checkpoint held elsewhere is invalid: {exc.message}", reason)
    roots: dict[int, bytes] = {}
    frontier = merkle.CompactRange()
    payload_checker = _PayloadChecker(store, master) if check_payloads else None
    privacy_seqs: set[int] = set()

    expected = 0
    prev_leaf: bytes | None = None
    prev2_leaf: bytes | None = None
    rows = store.entries(0, size, batch=_BATCH)
    payload_iter = store.payloads(0, size) if payload_checker else iter(())
    next_payload = next(payload_iter, None)
    batch_nodes: dict[merkle.NodeKey, bytes] = {}
    for row in rows:
        if row.seq != expected:
            problems.add(
                f"entry {expected} is missing (the next stored entry is {row.seq})",
                "entry_missing",
                expected,
            )
            break
        row = _normalised(row)
        leaf = merkle.leaf_hash(row.body)
        entry = _check_entry(row, leaf, prev_leaf, prev2_leaf, problems)
        if entry is None:
            break
        if master is not None and not hmac.compare_digest(bytes(row.mac), master.entry_mac(leaf)):
            problems.add(
                f"entry {row.seq} was not written by this ledger: its authentication code is "
                "wrong (a forged or re-hashed entry)",
                "entry_forged",
                row.seq,
            )
        if entry.category == "privacy":
            privacy_seqs.add(entry.seq)
        if payload_checker is not None:
            while next_payload is not None and next_payload.seq < row.seq:
                problems.add("a payload is stored for no entry", "orphan_payload", next_payload.seq)
                next_payload = next(payload_iter, None)
            current = next_payload if next_payload and next_payload.seq == row.seq else None
            payload_checker.check(entry, current, problems)
            if current is not None:
                next_payload = next(payload_iter, None)
        for level, index, digest in frontier.append(leaf):
            batch_nodes[(level, index)] = digest
        if frontier.size in wanted_roots:
            roots[frontier.size] = frontier.root()
        prev2_leaf, prev_leaf = prev_leaf, leaf
        expected += 1
        if expected % _BATCH == 0:
            _compare_nodes(store, batch_nodes, problems)
            batch_nodes = {}
            if progress:
                progress(expected, size)
    _compare_nodes(store, batch_nodes, problems)
    if progress:
        progress(expected, size)
    verified_size = expected

    if payload_checker is not None:
        for seq, erasure in payload_checker.erasures.items():
            if erasure.erasure_seq not in privacy_seqs or erasure.erasure_seq <= seq:
                problems.add(
                    f"payload erasure of {seq} cites {erasure.erasure_seq}, "
                    "which is no erasure event after it",
                    "forged_erasure",
                    seq,
                )

    checked = 0
    for cp in checkpoints:
        checked += 1
        _check_checkpoint(
            cp.note, cp.size, verifier, origin, verified_size, roots, problems, "stored"
        )
    if external is not None:
        checked += 1
        _check_checkpoint(
            external_checkpoint or "",
            external.size,
            verifier,
            origin,
            verified_size,
            roots,
            problems,
            "held elsewhere",
        )

    return VerifyReport(
        ok=not problems.items,
        size=verified_size,
        root=frontier.root().hex(),
        checkpoints_checked=checked,
        payloads_checked=payload_checker.checked if payload_checker else 0,
        payloads_erased=payload_checker.erased if payload_checker else 0,
        external_checkpoint_size=external.size if external else None,
        problems=problems.items,
    )


def _as_bytes(value: object) -> bytes:
    """Blobs an attacker rewrote as text (SQLite's replace() returns TEXT) still get checked."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def _normalised(row: EntryRow) -> EntryRow:
    if type(row.body) is bytes and type(row.leaf_hash) is bytes and type(row.mac) is bytes:
        return row
    return replace(
        row, body=_as_bytes(row.body), leaf_hash=_as_bytes(row.leaf_hash), mac=_as_bytes(row.mac)
    )


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
    row: EntryRow,
    leaf: bytes,
    prev_leaf: bytes | None,
    prev2_leaf: bytes | None,
    problems: _Problems,
) -> _Parsed | None:
    seq = row.seq
    try:
        entry = _Parsed(row.body)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        problems.add(f"entry is not a well-formed ledger entry: {exc}", "malformed_entry", seq)
        return None
    expected_prev = prev_leaf.hex() if prev_leaf is not None else GENESIS_PREV
    if entry.prev != expected_prev:
        if prev2_leaf is not None and entry.prev == prev2_leaf.hex():
            problems.add(
                f"entry {seq - 1} does not belong between its neighbours: a forged entry "
                "was inserted",
                "entry_inserted",
                seq - 1,
            )
        elif entry.seq != seq:
            problems.add(
                f"position {seq} holds the entry that says it is seq {entry.seq}: entries were "
                "deleted, inserted or reordered",
                "seq_mismatch",
                seq,
            )
        else:
            problems.add(
                f"entry {seq - 1} was altered: its hash is not the one entry {seq} links to",
                "chain_broken",
                seq - 1,
            )
        return None
    if entry.seq != seq:
        problems.add(
            f"position {seq} holds an entry that says it is seq {entry.seq}", "seq_mismatch", seq
        )
        return None
    if not hmac.compare_digest(bytes(row.leaf_hash), leaf):
        problems.add(
            f"entry {seq} was altered: its hash no longer matches the one recorded when it "
            "was written",
            "leaf_hash_mismatch",
            seq,
        )
        return None
    columns = (row.ts, row.category, row.action, row.actor_id, row.entity_type, row.entity_id)
    body = (
        entry.ts,
        entry.category,
        entry.action,
        entry.actor.get("id"),
        entry.entity.get("type"),
        entry.entity.get("id"),
    )
    refs = (row.chatbot_id, row.conversation_id)
    attrs = entry.attributes
    expected_refs = tuple(
        value if isinstance(value := attrs.get(name), str) else None
        for name in ("chatbot_id", "conversation_id")
    )
    if (
        columns != body
        or row.outcome != entry.outcome
        or row.subject != entry.subject
        or refs != expected_refs
    ):
        problems.add(
            f"entry {seq}'s search columns disagree with its hashed body", "index_tampered", seq
        )
    return entry


def _compare_nodes(
    store: Store, computed: dict[merkle.NodeKey, bytes], problems: _Problems
) -> None:
    if not computed:
        return
    levels: dict[int, list[int]] = {}
    for level, index in computed:
        levels.setdefault(level, []).append(index)
    for level, indexes in levels.items():
        lo, hi = min(indexes), max(indexes) + 1
        stored = dict(store.nodes(level, lo, hi))
        for index in indexes:
            if stored.get(index) != computed[(level, index)]:
                first = index << level
                problems.add(
                    f"stored tree node (level {level}, index {index}) does not match entries "
                    f"{first}..{first + (1 << level) - 1}: proofs served from it would be wrong",
                    "node_mismatch",
                    None,  # a node covers many entries: the entry checks name the culprit
                    first_seq=first,
                    last_seq=first + (1 << level) - 1,
                )
                return


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
