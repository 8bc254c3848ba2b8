"""The one exception root of ChatLedger.

Library code raises subclasses of :class:`ChatLedgerError`; the CLI turns them into a
one-line message and an exit code, the HTTP API into the one JSON error shape. Each error
carries a stable machine-readable ``code`` and an HTTP ``status`` so that neither edge has
to guess.
"""

from __future__ import annotations

from typing import Any


class ChatLedgerError(Exception):
    """Root of every error ChatLedger raises on purpose."""

    code: str = "error"
    status: int = 500
    exit_code: int = 1

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def diagnostics(self) -> str:
        """A human-readable, one-paragraph explanation (never a dump of whole objects)."""
        if not self.details:
            return self.message
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.details.items()))
        return f"{self.message} ({extra})"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidInput(ChatLedgerError):
    """A caller sent something malformed: refused before anything is written."""

    code = "invalid_input"
    status = 422
    exit_code = 2


class NotFound(ChatLedgerError):
    code = "not_found"
    status = 404


class Conflict(ChatLedgerError):
    code = "conflict"
    status = 409


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    status = 413


class Unauthenticated(ChatLedgerError):
    code = "unauthenticated"
    status = 401


class Forbidden(ChatLedgerError):
    code = "forbidden"
    status = 403


class RateLimited(ChatLedgerError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float, details: dict[str, Any] | None = None):
        super().__init__(message, details={**(details or {}), "retry_after": retry_after})
        self.retry_after = retry_after


class LegalHoldActive(Conflict):
    code = "legal_hold"


class StorageError(ChatLedgerError):
    """The store could not durably write or read: callers fail closed."""

    code = "storage_error"
    status = 503


class IntegrityError(ChatLedgerError):
    """Verification found the ledger, a proof, a checkpoint or a bundle not as committed.

    ``seq`` names the first bad entry when there is one; ``reason`` is a stable short code
    (for example ``leaf_hash_mismatch``) that tests and scripts can match on.
    """

    code = "integrity_error"
    status = 409
    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        seq: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        merged = dict(details or {})
        merged["reason"] = reason
        if seq is not None:
            merged["seq"] = seq
        super().__init__(message, details=merged)
        self.reason = reason
        self.seq = seq


class ProofError(IntegrityError):
    """A Merkle inclusion or consistency proof is malformed or does not verify."""

    code = "proof_error"


class CheckpointError(IntegrityError):
    """A signed checkpoint is malformed, badly signed, or contradicts the log."""

    code = "checkpoint_error"
