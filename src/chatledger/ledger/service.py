"""The ledger as the rest of the platform uses it: append, read, prove, checkpoint, verify."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatledger.errors import IntegrityError, InvalidInput, LegalHoldActive, NotFound
from chatledger.events import Actor, Entity, Event
from chatledger.ledger import merkle
from chatledger.ledger.entry import Entry, utc_timestamp
from chatledger.ledger.note import NoteSigner, NoteVerifier
from chatledger.ledger.publish import PublishQueue
from chatledger.ledger.verify import Progress, Tuning, VerifyReport, verify_store
from chatledger.ledger.writer import LedgerWriter, Receipt, WorkContext, WorkFn, WriterConfig
from chatledger.privacy.keys import KeyCache, MasterSecret
from chatledger.privacy.payloads import open_payload
from chatledger.store.base import CheckpointRow, PayloadRow, Store, SubjectKeyRow

T = TypeVar("T")

HoldCheck = Callable[[WorkContext, str], str | None]
"""Returns a description of the legal hold covering a subject, or None."""
ErasureHook = Callable[[WorkContext, str], int]
"""Removes a subject's identifiers from other tables in the erasure's transaction; returns
how many rows it changed."""


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    hashes: list[bytes]
    root: bytes
    checkpoint: str

    def to_json(self) -> dict[str, Any]:
        return {
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "hashes": [h.hex() for h in self.hashes],
            "root": self.root.hex(),
            "checkpoint": self.checkpoint,
        }


@dataclass(frozen=True)
class Record:
    """An entry with its payload as a reader sees it: present, erased, or none."""

    entry: Entry
    payload: dict[str, Any] | None
    payload_status: str  # "present", "erased" or "none"
    erased_at: str | None = None
    erasure_seq: int | None = None
    salt: bytes | None = None
    payload_body: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"entry": self.entry.to_json(), "payload_status": self.payload_status}
        if self.payload is not None:
            out["payload"] = self.payload
        if self.payload_status == "erased":
            out["erased_at"] = self.erased_at
            out["erasure_seq"] = self.erasure_seq
        return out


class Ledger:
    def __init__(
        self,
        store: Store,
        master: MasterSecret,
        signer: NoteSigner,
        config: WriterConfig,
        publisher: PublishQueue | None = None,
    ) -> None:
        self.store = store
        self.origin = config.origin
        self.config = config
        self._master = master
        self._signer = signer
        self.verifier: NoteVerifier = signer.verifier()
        self.publisher = publisher or PublishQueue([])
        self.hold_check: HoldCheck | None = None
        self.erasure_hooks: dict[str, ErasureHook] = {}
        """Run by :meth:`erase_subject`, by table name (installing twice replaces)."""
        self._read_keys = KeyCache()
        self._writer = LedgerWriter(store, master, signer, config, self.publisher.submit)

    # -- appending ------------------------------------------------------------------------

    def append(self, event: Event) -> Receipt:
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[Event]) -> list[Receipt]:
        """Append events; returns once they are durable, with their seqs in order."""
        prepared = [self._writer.prepare(e) for e in events]
        return self._writer.append(prepared)

    def transact(self, fn: WorkFn[T]) -> tuple[T, list[Receipt]]:
        """Run ``fn`` in the ledger's transaction: its changes and its events commit together."""
        return self._writer.transact(fn)

    def transact_later(self, fn: WorkFn[T]) -> Future[tuple[T, list[Receipt]]]:
        """Queue ``fn`` like :meth:`transact` without waiting: the future resolves once its
        changes and events are durable (or fails, and then nothing of it was written). Lets a
        caller do work that needs no acknowledgement (such as retrieval) while it commits."""
        return self._writer.submit_fn(fn)

    def subject_ref(self, subject: str) -> str:
        return self._master.subject_ref(subject)

    def anonymous_actor(self, ip: str | None) -> Actor:
        """An unauthenticated caller, named by a keyed pseudonym of its address: the address
        itself goes only in payloads, where retention can erase it."""
        return Actor("anonymous", self._master.subject_ref(f"ip:{ip or 'unknown'}"))

    # -- reading --------------------------------------------------------------------------

    def size(self) -> int:
        return self.store.size()

    def entry(self, seq: int) -> Entry:
        if seq < 0:
            raise InvalidInput("seq must be a non-negative integer")
        rows = list(self.store.entries(seq, seq + 1))
        if not rows:
            raise NotFound(f"no ledger entry with seq {seq}", details={"seq": seq})
        return Entry.parse(rows[0].body, seq)

    def entries(self, start: int, end: int) -> Iterator[Entry]:
        for row in self.store.entries(start, end):
            yield Entry.parse(row.body, row.seq)

    def read(self, seq: int) -> Record:
        return self._record(self.entry(seq))

    def records(self, start: int, end: int) -> Iterator[Record]:
        for entry in self.entries(start, end):
            yield self._record(entry)

    def read_many(self, seqs: Sequence[int]) -> list[Record]:
        """The records of these seqs, in the order given (each must exist), with two queries
        for all of them rather than two or three each."""
        wanted = sorted({int(s) for s in seqs})
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        bodies = {
            int(seq): bytes(body)
            for seq, body in self.store.query(
                f"SELECT seq, body FROM ledger_entries WHERE seq IN ({marks})", wanted
            )
        }
        missing = [s for s in wanted if s not in bodies]
        if missing:
            raise NotFound(f"no ledger entry with seq {missing[0]}", details={"seq": missing[0]})
        payloads = {
            int(row[0]): PayloadRow(int(row[0]), str(row[1]), bytes(row[2]), bytes(row[3]))
            for row in self.store.query(
                "SELECT seq, key_ref, nonce, ciphertext FROM ledger_payloads "
                f"WHERE seq IN ({marks})",
                wanted,
            )
        }
        keys = {ref: self.store.subject_key(ref) for ref in {p.key_ref for p in payloads.values()}}
        return [
            self._record(Entry.parse(bodies[int(s)], int(s)), payloads.get(int(s)), keys, read=True)
            for s in seqs
        ]

    def _record(
        self,
        entry: Entry,
        row: PayloadRow | None = None,
        keys: dict[str, SubjectKeyRow | None] | None = None,
        *,
        read: bool = False,
    ) -> Record:
        """``read``: the caller has read the payload ``row`` already (None: there is none),
        and ``keys`` holds its subject key."""
        if entry.payload_digest is None:
            return Record(entry, None, "none")
        if not read:
            row = self.store.payload(entry.seq)
        if row is None:
            key = None
        elif keys is not None and row.key_ref in keys:
            key = keys[row.key_ref]
        else:
            key = self.store.subject_key(row.key_ref)
        if row is None or key is None or key.wrapped is None:
            erasure = self.store.payload_erasures().get(entry.seq)
            erased_at = key.erased_at if key else None
            if erasure is not None and erased_at is None:
                erased_at = self.entry(erasure.erasure_seq).ts
            return Record(
                entry,
                None,
                "erased",
                erased_at=erased_at,
                erasure_seq=erasure.erasure_seq if erasure else (key.erasure_seq if key else None),
            )
        aead = self._read_keys.get(row.key_ref)
        if aead is None:
            aead = AESGCM(self._master.unwrap(row.key_ref, key.wrapped))
            self._read_keys.put(row.key_ref, aead)
        opened = open_payload(aead, row.nonce, row.ciphertext, entry.payload_digest, entry.seq)
        return Record(entry, opened.value, "present", salt=opened.salt, payload_body=opened.body)

    # -- proofs and checkpoints -----------------------------------------------------------

    def root(self, size: int | None = None) -> bytes:
        size = self.size() if size is None else size
        return merkle.tree_root(size, self.store.fetch_nodes)

    def sign_note(self, text: str) -> str:
        """Sign a note (bundle manifests, evidence packs) with the log's key."""
        return self._signer.sign(text)

    def latest_checkpoint(self) -> CheckpointRow | None:
        return self.store.latest_checkpoint()

    def checkpoint(self) -> CheckpointRow:
        """Sign a checkpoint of the current tree now (or return the latest if nothing changed)."""
        self._writer.checkpoint()
        latest = self.store.latest_checkpoint()
        if latest is None:
            raise NotFound("the ledger is empty: there is nothing to checkpoint")
        return latest

    def _checkpoint_covering(self, seq: int | None) -> CheckpointRow:
        latest = self.store.latest_checkpoint()
        if latest is None or (seq is not None and latest.size <= seq):
            latest = self.checkpoint()
        return latest

    def prove(self, seq: int, tree_size: int | None = None) -> InclusionProof:
        """Inclusion proof of entry ``seq`` against a signed checkpoint (O(log n) reads)."""
        size = self.size()
        if not 0 <= seq < size:
            raise NotFound(f"no ledger entry with seq {seq}", details={"seq": seq, "size": size})
        if tree_size is None:
            checkpoint = self._checkpoint_covering(seq)
            note = checkpoint.note
            tree_size = checkpoint.size
        else:
            if not seq < tree_size <= size:
                raise InvalidInput("tree_size must be above seq and at most the ledger size")
            note = ""
        leaf = self.store.fetch_nodes([(0, seq)])[(0, seq)]
        hashes = merkle.inclusion_proof(seq, tree_size, self.store.fetch_nodes)
        root = merkle.tree_root(tree_size, self.store.fetch_nodes)
        merkle.verify_inclusion(seq, tree_size, leaf, hashes, root)
        return InclusionProof(seq, tree_size, leaf, hashes, root, note)

    def prove_consistency(self, old_size: int, new_size: int) -> list[bytes]:
        size = self.size()
        if not 0 < old_size <= new_size <= size:
            raise InvalidInput(
                "sizes must satisfy 0 < old_size <= new_size <= ledger size",
                details={"old_size": old_size, "new_size": new_size, "size": size},
            )
        return merkle.consistency_proof(old_size, new_size, self.store.fetch_nodes)

    # -- verification ---------------------------------------------------------------------

    def verify(
        self,
        *,
        external_checkpoint: str | None = None,
        progress: Progress | None = None,
        jobs: int = 0,
        tuning: Tuning | None = None,
        start: int = 0,
    ) -> VerifyReport:
        """Verify the whole ledger; a large one in ``jobs`` processes, this one included
        (0: one per CPU, 1: this one alone), with the same report either way. With
        ``start``, from that seq on (see :meth:`first_live_seq` and ``verify_store``)."""
        return verify_store(
            self.store,
            self.verifier,
            self.origin,
            master=self._master,
            external_checkpoint=external_checkpoint,
            progress=progress,
            jobs=jobs,
            tuning=tuning,
            start=start,
        )

    def first_live_seq(self) -> int:
        """Where the log still held in the database begins: the end of the ranges the
        partition catalogue records as detached from seq 0 on (PostgreSQL), else 0. Entries
        missing anywhere else are missing, not archived."""
        found = self.store.query(
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'ledger_partitions'"
            if getattr(self.store, "dialect", "") == "postgresql"
            else "SELECT 1 FROM sqlite_master WHERE name = 'ledger_partitions'"
        )
        if not found:
            return 0
        live = 0
        for first, end, state in self.store.query(
            "SELECT first_seq, end_seq, state FROM ledger_partitions ORDER BY first_seq"
        ):
            if state != "detached" or int(first) != live:
                break
            live = int(end)
        return live

    # -- erasure --------------------------------------------------------------------------

    def erase_subject(self, subject: str, actor: Actor, *, reason: str = "") -> Receipt:
        """Crypto-shred a data subject: destroy their keys and erase their payloads.

        Refused while a legal hold covers the subject. The entries stay, so the ledger still
        verifies; the erasure itself is an event.
        """
        ref = self._master.subject_ref(subject)

        def work(ctx: WorkContext) -> tuple[int, list[Event]]:
            if self.hold_check is not None:
                hold = self.hold_check(ctx, subject)
                if hold is not None:
                    raise LegalHoldActive(
                        f"erasure refused: a legal hold applies ({hold})", details={"subject": ref}
                    )
            txn = ctx.txn
            erasure_seq = ctx.next_seq
            keys = txn.erase_subject_keys(ref, utc_timestamp(), erasure_seq)
            seqs = txn.payload_seqs_for_subject(ref)
            txn.record_payload_erasures(seqs, erasure_seq, "subject_erasure", delete=True)
            scrubbed = {name: hook(ctx, subject) for name, hook in self.erasure_hooks.items()}
            self._writer.forget_subject(ref)
            event = Event(
                "privacy.subject_erased",
                actor,
                Entity("subject", ref),
                attributes={
                    "subject": ref,
                    "keys_destroyed": keys,
                    "payloads_erased": len(seqs),
                    "first_seq": min(seqs) if seqs else None,
                    "last_seq": max(seqs) if seqs else None,
                    "rows_scrubbed": scrubbed,
                },
                payload={"reason": reason} if reason else None,
            )
            return len(seqs), [event]

        _, receipts = self.transact(work)
        for key in self.store.subject_keys():
            if key.subject_ref == ref:
                self._read_keys.evict(key.key_ref)
        purge = getattr(self.store, "checkpoint_wal", None)
        if callable(purge):
            purge()
        return receipts[0]

    def close(self) -> None:
        self._writer.close()
        self.publisher.close()
        self.store.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def verify_proof_json(proof: dict[str, Any], verifier: NoteVerifier, origin: str) -> None:
    """Check an inclusion proof as printed by ``ledger prove`` against its checkpoint."""
    from chatledger.ledger.note import open_checkpoint

    try:
        checkpoint = open_checkpoint(proof["checkpoint"], verifier, origin)
        hashes = [bytes.fromhex(h) for h in proof["hashes"]]
        leaf = bytes.fromhex(proof["leaf_hash"])
        index, size = int(proof["leaf_index"]), int(proof["tree_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"malformed proof: {exc}", reason="malformed") from exc
    if checkpoint.size != size:
        raise IntegrityError(
            "the proof's tree size differs from its checkpoint", reason="size_mismatch"
        )
    merkle.verify_inclusion(index, size, leaf, hashes, checkpoint.root)
