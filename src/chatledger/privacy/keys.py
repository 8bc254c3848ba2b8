"""Per-subject keys for crypto-shredding, and the master secret they are wrapped under.

Each data subject gets a random AES-256 key, stored wrapped (AES-GCM under a key derived
from the master secret) in the store. Erasing the subject destroys the wrapped key: every
payload sealed under it becomes unreadable, also in backups taken after the erasure, while
the ledger entries (which hold only digests) still verify. Subjects appear in entries only
as a keyed pseudonym (HMAC of the subject id), so an erased subject cannot be named from
the ledger either.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections import OrderedDict
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chatledger.errors import IntegrityError, StorageError

_REF_CACHE_SIZE = 8192
SYSTEM_KEY_REF = "system"
"""Key for payloads that belong to no data subject (configuration before/after, ...)."""


def _derive(master: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(master)


class MasterSecret:
    """The data directory's master secret (32 random bytes, file mode 0600)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise StorageError("the master secret must be 32 bytes")
        self._pseudonym_key = _derive(secret, b"chatledger subject pseudonym v1")
        self._wrap = AESGCM(_derive(secret, b"chatledger key wrapping v1"))
        self._entry_mac_key = _derive(secret, b"chatledger entry mac v1")
        self._refs: dict[str, str] = {}

    @classmethod
    def load_or_create(cls, path: Path) -> MasterSecret:
        if path.exists():
            return cls(path.read_bytes())
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = os.urandom(32)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secret)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if another process created it first
        except FileExistsError:
            pass  # another process won the race: use its secret
        finally:
            os.unlink(tmp)
        return cls(path.read_bytes())

    def subject_ref(self, subject: str) -> str:
        """The keyed pseudonym under which a subject appears in ledger entries."""
        # The same few subjects recur on every turn of their conversations; an HMAC costs
        # more than the rest of an event's envelope. (Dict operations are atomic: no lock.)
        ref = self._refs.get(subject)
        if ref is None:
            mac = hmac.digest(self._pseudonym_key, subject.encode(), "sha256").hex()
            ref = f"subj_{mac[:40]}"
            if len(self._refs) >= _REF_CACHE_SIZE:
                self._refs.clear()
            self._refs[subject] = ref
        return ref

    @property
    def entry_mac_key(self) -> bytes:
        """The derived key of :meth:`entry_mac`, for verifier processes (never stored)."""
        return self._entry_mac_key

    def entry_mac(self, leaf_hash: bytes) -> bytes:
        """Authenticates an entry as written by this deployment (the key never enters the DB)."""
        return hmac.digest(self._entry_mac_key, leaf_hash, "sha256")

    def wrap(self, key_ref: str, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._wrap.encrypt(nonce, key, key_ref.encode())

    def unwrap(self, key_ref: str, wrapped: bytes) -> bytes:
        try:
            return self._wrap.decrypt(wrapped[:12], wrapped[12:], key_ref.encode())
        except (InvalidTag, ValueError):
            # Not a crash: the usual cause is a database opened with another deployment's
            # data directory (on PostgreSQL the two are given separately).
            raise IntegrityError(
                f"the subject key {key_ref} does not unwrap with this data directory's master "
                "secret: use the data directory this database was created with, or the key "
                "was altered in the database",
                reason="payload_key_unreadable",
            ) from None


class KeyCache:
    """A bounded, thread-safe cache of unwrapped AES-GCM objects by key ref.

    Creating an AESGCM object per call halves encryption speed, so the writer and readers
    keep them; erasure evicts the subject's entries.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, AESGCM] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_ref: str) -> AESGCM | None:
        with self._lock:
            item = self._items.get(key_ref)
            if item is not None:
                self._items.move_to_end(key_ref)
            return item

    def put(self, key_ref: str, aead: AESGCM) -> None:
        with self._lock:
            self._items[key_ref] = aead
            self._items.move_to_end(key_ref)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def evict(self, key_ref: str) -> None:
        with self._lock:
            self._items.pop(key_ref, None)
