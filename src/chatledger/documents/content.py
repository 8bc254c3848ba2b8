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


def get_texts(store: Store, digests: Sequence[str]) -> dict[str, str | None]:
    """Texts by digest; ``None`` for content that retention has erased."""
    out: dict[str, str | None] = {}
    for start in range(0, len(digests), 400):
        chunk = list(digests[start : start + 400])
        marks = ",".join("?" * len(chunk))
        for digest, data in store.query(
            f"SELECT sha256, data FROM blobs WHERE sha256 IN ({marks})", chunk
        ):
            out[digest] = None if data is None else bytes(data).decode("utf-8", "replace")
    return out
