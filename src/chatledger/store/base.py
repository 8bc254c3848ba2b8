"""The storage protocol the ledger needs; SQLite implements it, PostgreSQL will too.

The ledger's rules (hashing, sequencing, sealing) live in :mod:`chatledger.ledger`; a store
only keeps rows durably, refuses UPDATE and DELETE on ledger tables in the database itself,
and answers the reads that proofs and verification need.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from chatledger.ledger.merkle import NodeKey


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One ledger entry as stored: the canonical body plus columns copied out for search."""

    seq: int
    ts: str
    category: str
    action: str
    actor_id: str
    entity_type: str
    entity_id: str
    outcome: str
    subject: str | None
    chatbot_id: str | None
    conversation_id: str | None
    body: bytes
    leaf_hash: bytes
    mac: bytes
    """HMAC of the leaf hash under a key kept outside the database: forging needs it."""


@dataclass(frozen=True, slots=True)
class PayloadRow:
    seq: int
    key_ref: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class SubjectKeyRow:
    key_ref: str
    subject_ref: str
    wrapped: bytes | None
    created_at: str
    erased_at: str | None
    erasure_seq: int | None


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    size: int
    ts: str
    note: str


@dataclass(frozen=True, slots=True)
class ErasureRow:
    seq: int
    erasure_seq: int
    reason: str


class WriteTxn(Protocol):
    """One write transaction, holding the ledger's write lock until commit."""

    conn: Any
    """The backend's own connection, for components with backend-specific SQL (the index)."""

    def head(self) -> tuple[int, bytes | None]:
        """Tree size and the last entry's leaf hash, read under the write lock."""
        ...

    def fetch_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]: ...

    def insert_entries(self, rows: Sequence[EntryRow]) -> None: ...

    def insert_nodes(self, rows: Sequence[tuple[int, int, bytes]]) -> None: ...

    def insert_payloads(self, rows: Sequence[PayloadRow]) -> None: ...

    def insert_checkpoint(self, row: CheckpointRow) -> None: ...

    def live_subject_key(self, subject_ref: str) -> SubjectKeyRow | None: ...

    def insert_subject_key(self, row: SubjectKeyRow) -> None: ...

    def erase_subject_keys(self, subject_ref: str, erased_at: str, erasure_seq: int) -> int: ...

    def keys_destroyed_since(self, seq: int) -> bool:
        """Whether an erasure at ``seq`` or later destroyed a subject key (another process's
        appends are checked with it before this process reuses the keys it holds)."""
        ...

    def payload_seqs_for_subject(self, subject_ref: str) -> list[int]: ...

    def record_payload_erasures(
        self, seqs: Sequence[int], erasure_seq: int, reason: str, *, delete: bool
    ) -> None: ...

    def savepoint(self) -> None: ...

    def release_savepoint(self) -> None: ...

    def rollback_savepoint(self) -> None: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement of the platform's own tables inside this transaction."""
        ...


class Store(Protocol):
    """A ledger store. Reads are safe from any thread; writes go through :meth:`write`."""

    dialect: str

    def write(self) -> AbstractContextManager[WriteTxn]: ...

    def read_connection(self) -> Any:
        """This thread's read-only connection (for components with their own SQL)."""
        ...

    def size(self) -> int: ...

    def entries(self, start: int, end: int, *, batch: int = 2000) -> Iterator[EntryRow]: ...

    def entry_batches(
        self, start: int, end: int, *, batch: int = 5000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The entries of ``[start, end)`` as plain tuples in :class:`EntryRow`'s field
        order, one list per ``batch`` seqs (full verification reads every entry, and an
        object per row costs more than hashing it)."""
        ...

    def payload_batches(
        self, start: int, end: int, *, batch: int = 5000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The payloads of ``[start, end)`` as tuples (seq, key_ref, nonce, ciphertext), one
        list per ``batch`` seqs."""
        ...

    def fetch_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]: ...

    def nodes(self, level: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """Stored hashes of ``level`` (>= 1) with index in ``[start, end)``, by index."""
        ...

    def payloads(self, start: int, end: int) -> Iterator[PayloadRow]: ...

    def payload(self, seq: int) -> PayloadRow | None: ...

    def subject_key(self, key_ref: str) -> SubjectKeyRow | None: ...

    def subject_keys(self) -> Iterator[SubjectKeyRow]: ...

    def checkpoints(self) -> list[CheckpointRow]: ...

    def latest_checkpoint(self) -> CheckpointRow | None: ...

    def payload_erasures(self) -> dict[int, ErasureRow]: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read-only query on the platform's own tables."""
        ...

    def close(self) -> None: ...
