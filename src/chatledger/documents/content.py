"""The content-addressed store: every document version and chunk kept by its SHA-256, so a
chunk quoted by an old answer can be shown exactly as it was after the document is replaced
or deleted (until retention erases it)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from chatledger.ledger.entry import utc_timestamp
from chatledger.store.base import Store, WriteTxn


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_blobs(txn: WriteTxn, blobs: Iterable[bytes]) -> list[str]:
    """Store blobs (idempotent: same content, same key) and return their digests."""
    digests: list[str] = []
    now = utc_timestamp()
    for data in blobs:
        digest = sha256_hex(data)
        digests.append(digest)
        txn.execute(
            "INSERT INTO blobs (sha256, size, data, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (sha256) DO NOTHING",
            (digest, len(data), data, now),
        )
    return digests


def _as_bytes(data: object) -> bytes:
    """A stored blob as bytes, whatever type the database hands back: a value written behind
    the platform's back may be TEXT (or a number) rather than a BLOB. Such a value is kept
    as its UTF-8 bytes, so that its SHA-256 tells whether it is still the content."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    return str(data).encode("utf-8", "surrogatepass")


def get_blobs(store: Store, digests: Sequence[str]) -> dict[str, bytes | None]:
    """Stored bytes by digest, exactly as kept: ``None`` for content that retention has
    erased; digests with no row at all are left out. Callers that show content check it
    against its digest (:func:`sha256_hex`): the store is not the record."""
    # SQLite hands back a TEXT value written behind our back as ``str``, and refuses one that
    # is not valid UTF-8: ask for the bytes. (PostgreSQL's column is bytea, always bytes.)
    column = "CAST(data AS BLOB)" if store.dialect == "sqlite" else "data"
    out: dict[str, bytes | None] = {}
    for start in range(0, len(digests), 400):
        chunk = list(digests[start : start + 400])
        marks = ",".join("?" * len(chunk))
        for digest, data in store.query(
            f"SELECT sha256, {column} FROM blobs WHERE sha256 IN ({marks})", chunk
        ):
            out[digest] = None if data is None else _as_bytes(data)
    return out


def get_texts(store: Store, digests: Sequence[str]) -> dict[str, str | None]:
    """Texts by digest; ``None`` for content that retention has erased. Not checked against
    the digest: use :func:`get_blobs` to verify before showing content as genuine."""
    return {
        digest: None if data is None else data.decode("utf-8", "replace")
        for digest, data in get_blobs(store, digests).items()
    }
