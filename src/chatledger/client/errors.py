"""The SDK's exceptions: one root, one type per thing a caller can act on."""

from __future__ import annotations

from typing import Any


class ChatLedgerClientError(Exception):
    """Root of every error the SDK raises on purpose."""


class BufferFull(ChatLedgerClientError):
    """The local buffer holds as many records (or bytes) as it may: nothing was recorded.

    The server has been unreachable (or refusing) for a while; ``last_error`` says why.
    Raise the limits, fix the connection, or shed load: the SDK never drops a record silently.
    """

    def __init__(
        self, records: int, size: int, limit_records: int, limit_bytes: int, last_error: str | None
    ) -> None:
        super().__init__(
            f"the ChatLedger buffer is full ({records} records, {size} bytes; limits "
            f"{limit_records} records, {limit_bytes} bytes); last delivery error: "
            f"{last_error or 'none'}"
        )
        self.records = records
        self.size = size
        self.limit_records = limit_records
        self.limit_bytes = limit_bytes
        self.last_error = last_error


class RecordRejected(ChatLedgerClientError):
    """The server refused this record for good (invalid, unknown chatbot, key reused for
    different content). It is kept in the spool's ``rejected`` table, not retried."""

    def __init__(self, key: str, code: str, message: str) -> None:
        super().__init__(f"record {key} was rejected: {code}: {message}")
        self.key = key
        self.code = code
        self.message = message


class FlushTimeout(ChatLedgerClientError, TimeoutError):
    """Records were still waiting for the server when the timeout passed (they stay in the
    buffer and are sent later)."""

    def __init__(self, pending: int, last_error: str | None) -> None:
        super().__init__(
            f"{pending} records not yet acknowledged by the server; "
            f"last delivery error: {last_error or 'none'}"
        )
        self.pending = pending
        self.last_error = last_error


class ClientClosed(ChatLedgerClientError):
    """The client was closed: it records nothing more."""


def describe(error: Any) -> str:
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return text[:500]
