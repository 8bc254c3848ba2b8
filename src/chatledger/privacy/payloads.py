"""Sealing payloads: a keyed digest that the hashed entry commits to, and AES-GCM.

``digest = HMAC-SHA256(salt, canonical_json(payload))`` with a fresh 16-byte salt, so the
digest reveals nothing about short or guessable content. The salt travels inside the
ciphertext, so destroying the key destroys the salt too: after erasure not even a guess of
the content can be checked against the digest. The AES-GCM associated data is the digest,
which binds a ciphertext to the one entry that commits to it.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatledger.errors import IntegrityError, PayloadTooLarge
from chatledger.ledger.canonical import canonical_json, parse_json

SALT_SIZE = 16


@dataclass(frozen=True, slots=True)
class PreparedPayload:
    """A payload canonicalised and committed to, not yet encrypted."""

    body: bytes
    salt: bytes
    digest: str

    @classmethod
    def prepare(cls, payload: dict[str, Any], max_bytes: int) -> PreparedPayload:
        body = canonical_json(payload)
        if len(body) > max_bytes:
            raise PayloadTooLarge(
                f"payload is {len(body)} bytes, over the limit of {max_bytes}",
                details={"size": len(body), "limit": max_bytes},
            )
        salt = os.urandom(SALT_SIZE)
        return cls(body, salt, payload_digest(salt, body))

    def seal(self, aead: AESGCM) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        return nonce, aead.encrypt(nonce, self.salt + self.body, self.digest.encode())


def payload_digest(salt: bytes, body: bytes) -> str:
    return hmac.digest(salt, body, "sha256").hex()


@dataclass(frozen=True, slots=True)
class OpenedPayload:
    value: dict[str, Any]
    body: bytes
    salt: bytes


def check_payload(aead: AESGCM, nonce: bytes, ciphertext: bytes, digest: str, seq: int) -> None:
    """Decrypt and check a payload against its entry's digest, without parsing it."""
    _decrypt(aead, nonce, ciphertext, digest, seq)


def _decrypt(
    aead: AESGCM, nonce: bytes, ciphertext: bytes, digest: str, seq: int
) -> tuple[bytes, bytes]:
    try:
        plain = aead.decrypt(nonce, ciphertext, digest.encode())
    except InvalidTag:
        raise IntegrityError(
            "payload ciphertext was altered or belongs to another entry",
            reason="payload_tampered",
            seq=seq,
        ) from None
    salt, body = plain[:SALT_SIZE], plain[SALT_SIZE:]
    if not hmac.compare_digest(payload_digest(salt, body), digest):
        raise IntegrityError(
            "payload does not match the digest in its entry",
            reason="payload_digest_mismatch",
            seq=seq,
        )
    return salt, body


def open_payload(
    aead: AESGCM, nonce: bytes, ciphertext: bytes, digest: str, seq: int
) -> OpenedPayload:
    """Decrypt and check a payload against the digest its entry commits to."""
    salt, body = _decrypt(aead, nonce, ciphertext, digest, seq)
    value = parse_json(body)
    return OpenedPayload(value, body, salt)
