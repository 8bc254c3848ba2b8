"""The one interface every model provider implements, and the values that cross it.

A provider turns a :class:`CompletionRequest` into a :class:`Completion` (or a stream of
:class:`TextDelta` events closed by one :class:`StreamDone`). The request carries both the
chat messages (for real models) and the numbered context passages plus the bare question
(for the offline extractive responder), so the chat service builds one request and does not
care which provider answers it.

Implementations: :class:`chatledger.rag.openai_compat.OpenAICompatibleProvider` and
:class:`chatledger.rag.offline.OfflineResponder`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from chatledger.errors import ChatLedgerError

Role = Literal["system", "user", "assistant"]
UsageSource = Literal["provider", "estimated"]
ProviderErrorReason = Literal["timeout", "http_status", "malformed_response", "connection"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ContextPassage:
    """A retrieved chunk as shown to the model, numbered from 1 for citations ``[n]``."""

    number: int
    chunk_id: str
    document_id: str
    document_version: int
    text: str
    heading: str = ""
    page: int | None = None
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    messages: tuple[ChatMessage, ...]
    question: str = ""
    passages: tuple[ContextPassage, ...] = ()
    model: str | None = None  # overrides the provider's configured model
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    usage_source: UsageSource
    finish_reason: str
    latency_ms: float
    # True for the offline responder's fixed "I don't know" answer: an unanswered question.
    unanswered: bool = False


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamDone:
    """Last event of every successful stream: the whole answer with usage and timing."""

    completion: Completion


StreamEvent = TextDelta | StreamDone


@runtime_checkable
class Provider(Protocol):
    name: str

    def complete(self, request: CompletionRequest) -> Completion: ...

    def stream(self, request: CompletionRequest) -> Generator[StreamEvent, None, None]:
        """Text deltas, then one StreamDone. Close the generator to abandon the stream
        (a visitor who disconnects): the connection is released at once."""
        ...

    def close(self) -> None: ...


class ProviderError(ChatLedgerError):
    """A model provider failed. ``reason`` is a stable short code callers can match on."""

    code = "provider_error"
    status = 502

    def __init__(
        self,
        message: str,
        *,
        reason: ProviderErrorReason,
        provider: str,
        http_status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        merged: dict[str, Any] = {**(details or {}), "reason": reason, "provider": provider}
        if http_status is not None:
            merged["http_status"] = http_status
        super().__init__(message, details=merged)
        self.reason: ProviderErrorReason = reason
        self.provider = provider
        self.http_status = http_status
        if reason == "timeout":
            self.status = 504
