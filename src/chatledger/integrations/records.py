"""Ingest records: what an integration reports, validated before anything is written.

One record becomes one ledger event (plus a ``conversation.start`` the first time its
conversation is seen). The SDK sends records as JSON; the OTLP mapper builds them from spans.
Every record carries an idempotency key, so a record sent twice is stored once.

Wire shape of an SDK record::

    {"key": "...", "type": "message.user", "chatbot_id": "bot_...",
     "conversation_id": "<the application's id>", "occurred_at": "2026-01-02T03:04:05Z",
     "data": {"message_id": "...", "text": "..."}}
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from chatledger.errors import InvalidInput
from chatledger.events import Category, category_of

MAX_ID = 200
MAX_TEXT = 100_000
MAX_SHORT = 500
MAX_CHUNKS = 200
MAX_TAGS = 50
MAX_PROMPT_MESSAGES = 500
MAX_ATTACHMENTS = 20
RESOLUTIONS = ("open", "resolved", "escalated", "abandoned")
RATINGS = ("positive", "negative")

RECORD_TYPES = (
    "conversation.start",
    "conversation.end",
    "conversation.resolution",
    "conversation.outcome",
    "message.user",
    "message.retrieval",
    "model.call",
    "message.answer",
    "message.feedback",
    "integration.span",
)
"""The record types an integration may send (``custom.*`` types too)."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RecordError(Exception):
    """One record is invalid: it is refused, its neighbours are not."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class SpanRef:
    """Where a record came from when it was mapped from an OpenTelemetry span."""

    trace_id: str
    span_id: str
    index: int
    """Position of the span in its request (for OTLP partial-success counting)."""


@dataclass(slots=True)
class IngestRecord:
    key: str
    type: str
    chatbot_id: str | None
    conversation: str | None
    """The application's own conversation id (scoped to the chatbot by the service)."""
    data: dict[str, Any]
    occurred_at: str | None = None
    digest: str = ""
    span: SpanRef | None = None
    error: RecordError | None = None
    """Set when the record was refused before the service saw it (kept to report it)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Attributes added by the mapper (trace and span ids, span name, ...)."""


def content_digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


# -- small validators -----------------------------------------------------------------------


def ident(value: Any, what: str, *, required: bool = True, limit: int = MAX_ID) -> str | None:
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise RecordError("invalid_record", f"{what} must be a non-empty string of <= {limit}")
    if _CONTROL.search(value):
        raise RecordError("invalid_record", f"{what} must not contain control characters")
    return value.strip()


def text(value: Any, what: str, *, required: bool = True, limit: int = MAX_TEXT) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise RecordError("invalid_record", f"{what} must be a string")
    if required and not value.strip():
        raise RecordError("invalid_record", f"{what} must not be empty")
    if len(value) > limit:
        raise RecordError("too_large", f"{what} is longer than {limit} characters")
    return clean_str(value)


def integer(value: Any, what: str, *, minimum: int = 0) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= 2**53:
        raise RecordError("invalid_record", f"{what} must be an integer >= {minimum}")
    return value


def number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError("invalid_record", f"{what} must be a number")
    if not math.isfinite(value):
        raise RecordError("invalid_record", f"{what} must be finite")
    return round(float(value), 6)


def boolean(value: Any, what: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise RecordError("invalid_record", f"{what} must be true or false")
    return value


def timestamp(value: Any, what: str = "occurred_at") -> str | None:
    """An ISO 8601 moment, normalised to UTC with microseconds and a Z."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise RecordError("invalid_record", f"{what} must be an ISO 8601 timestamp")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RecordError("invalid_record", f"{what} must be an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso(moment)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def iso_from_nanos(nanos: int) -> str | None:
    if nanos <= 0:
        return None
    try:
        moment = datetime.fromtimestamp(nanos // 1_000_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    micros = (nanos % 1_000_000_000) // 1000
    return iso(moment.replace(microsecond=micros))


def clean_str(value: str) -> str:
    """Lone surrogates cannot be encoded (nor hashed): replace them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def json_value(value: Any, depth: int = 0) -> Any:
    """A value made safe for the canonical encoder: finite numbers, safe integers (larger
    ones become strings), encodable strings, bounded depth (deeper becomes a JSON string)."""
    kind = type(value)
    if kind is str:
        return clean_str(value)
    if value is None or kind is bool:
        return value
    if kind is int:
        return value if -(2**53) < value < 2**53 else str(value)
    if kind is float:
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if depth >= 12:
        return orjson.dumps(value, default=str).decode()
    if kind is dict:
        return {clean_str(str(k)): json_value(v, depth + 1) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [json_value(v, depth + 1) for v in value]
    if kind is bytes:
        return value.hex()
    return clean_str(str(value))


def small_object(value: Any, what: str, *, limit: int = 8192) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecordError("invalid_record", f"{what} must be an object")
    safe = json_value(value)
    if len(orjson.dumps(safe)) > limit:
        raise RecordError("too_large", f"{what} is larger than {limit} bytes")
    return dict(safe)


def sha256_hex(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX64.match(value.lower()):
        raise RecordError("invalid_record", f"{what} must be 64 hex characters")
    return value.lower()


def text_sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# -- per-type data ----------------------------------------------------------------------------


def _start(d: dict[str, Any]) -> dict[str, Any]:
    user_id = ident(d.get("user_id"), "data.user_id", required=False, limit=150)
    visitor_id = ident(d.get("visitor_id"), "data.visitor_id", required=False, limit=150)
    if user_id and visitor_id:
        raise RecordError("invalid_record", "give data.user_id or data.visitor_id, not both")
    return {
        "user_id": user_id,
        "visitor_id": visitor_id,
        "channel": ident(d.get("channel"), "data.channel", required=False, limit=50),
        "user_agent": text(d.get("user_agent"), "data.user_agent", required=False, limit=500),
        "metadata": small_object(d.get("metadata"), "data.metadata"),
    }


def _end(d: dict[str, Any]) -> dict[str, Any]:
    return {"reason": ident(d.get("reason"), "data.reason", required=False)}


def _resolution(d: dict[str, Any]) -> dict[str, Any]:
    resolution = d.get("resolution")
    if resolution not in RESOLUTIONS:
        raise RecordError("invalid_record", f"data.resolution must be one of {RESOLUTIONS}")
    return {
        "resolution": resolution,
        "set_by": ident(d.get("set_by"), "data.set_by", required=False),
        "reason": ident(d.get("reason"), "data.reason", required=False),
    }


def _outcome(d: dict[str, Any]) -> dict[str, Any]:
    tags = d.get("tags")
    if (
        not isinstance(tags, list)
        or len(tags) > MAX_TAGS
        or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in tags)
    ):
        raise RecordError("invalid_record", "data.tags must be a list of short strings")
    return {
        "tags": sorted({clean_str(t) for t in tags}),
        "replace": bool(boolean(d.get("replace"), "data.replace")),
    }


def _attachments(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ATTACHMENTS:
        raise RecordError("invalid_record", f"data.attachments: at most {MAX_ATTACHMENTS} items")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise RecordError("invalid_record", "each attachment must be an object")
        out.append(
            {
                "name": text(item.get("name"), "attachment name", limit=255),
                "type": ident(item.get("type"), "attachment type", limit=100),
                "size": integer(item.get("size"), "attachment size"),
                "sha256": sha256_hex(item.get("sha256"), "attachment sha256"),
            }
        )
    return out


def _user(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "message_id": ident(d.get("message_id"), "data.message_id"),
        "text": text(d.get("text"), "data.text"),
        "attachments": _attachments(d.get("attachments")),
    }


def _chunk(item: Any, rank: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise RecordError("invalid_record", "each chunk must be an object")
    body = text(item.get("text"), "chunk text", required=False)
    digest = sha256_hex(item.get("sha256"), "chunk sha256")
    if body is not None and digest is None:
        digest = text_sha256(body)
    version = item.get("document_version")
    if version is not None and not isinstance(version, int | str):
        raise RecordError("invalid_record", "chunk document_version must be a number or string")
    return {
        "rank": integer(item.get("rank"), "chunk rank", minimum=1) or rank,
        "chunk_id": ident(item.get("chunk_id"), "chunk_id", required=False),
        "document_id": ident(item.get("document_id"), "document_id", required=False),
        "document_version": ident(version, "document_version", required=False)
        if isinstance(version, str)
        else version,
        "source": text(item.get("source"), "chunk source", required=False, limit=2000),
        "score": number(item.get("score"), "chunk score"),
        "chunk_sha256": digest,
        "text": body,
        "metadata": small_object(item.get("metadata"), "chunk metadata"),
    }


def _retrieval(d: dict[str, Any]) -> dict[str, Any]:
    chunks = d.get("chunks") or []
    if not isinstance(chunks, list) or len(chunks) > MAX_CHUNKS:
        raise RecordError("invalid_record", f"data.chunks: a list of at most {MAX_CHUNKS}")
    return {
        "retrieval_id": ident(d.get("retrieval_id"), "data.retrieval_id"),
        "message_id": ident(d.get("message_id"), "data.message_id", required=False),
        "query": text(d.get("query"), "data.query", required=False),
        "data_source": ident(d.get("data_source"), "data.data_source", required=False),
        "top_k": integer(d.get("top_k"), "data.top_k"),
        "chunks": [_chunk(c, i + 1) for i, c in enumerate(chunks)],
    }


def _usage(d: dict[str, Any]) -> dict[str, Any]:
    reasons = d.get("finish_reasons")
    if reasons is None and d.get("finish_reason") is not None:
        reasons = [d.get("finish_reason")]
    if reasons is not None and (
        not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons)
    ):
        raise RecordError("invalid_record", "data.finish_reasons must be a list of strings")
    return {
        "provider": ident(d.get("provider"), "data.provider", required=False),
        "request_model": ident(d.get("request_model"), "data.request_model", required=False),
        "response_model": ident(d.get("response_model"), "data.response_model", required=False),
        "input_tokens": integer(d.get("input_tokens"), "data.input_tokens"),
        "output_tokens": integer(d.get("output_tokens"), "data.output_tokens"),
        "latency_ms": number(d.get("latency_ms"), "data.latency_ms"),
        "finish_reasons": [clean_str(r)[:100] for r in reasons[:20]] if reasons else None,
        "response_id": ident(d.get("response_id"), "data.response_id", required=False),
    }


def _prompt(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_PROMPT_MESSAGES:
        raise RecordError("invalid_record", "data.messages must be a list of messages")
    return [json_value(m) if isinstance(m, dict) else {"content": json_value(m)} for m in value]


def _model_call(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "call_id": ident(d.get("call_id"), "data.call_id"),
        "message_id": ident(d.get("message_id"), "data.message_id", required=False),
        "operation": ident(d.get("operation"), "data.operation", required=False, limit=64),
        **_usage(d),
        "messages": _prompt(d.get("messages")),
        "output": _prompt(d.get("output")),
        "request": small_object(d.get("request"), "data.request"),
        "error": text(d.get("error"), "data.error", required=False, limit=4000),
        "error_type": ident(d.get("error_type"), "data.error_type", required=False),
    }


def _answer(d: dict[str, Any]) -> dict[str, Any]:
    cited = d.get("cited")
    if cited is not None and (
        not isinstance(cited, list) or not all(isinstance(c, str) and c for c in cited)
    ):
        raise RecordError("invalid_record", "data.cited must be a list of chunk ids")
    groundedness = number(d.get("groundedness"), "data.groundedness")
    if groundedness is not None and not 0 <= groundedness <= 1:
        raise RecordError("invalid_record", "data.groundedness must be between 0 and 1")
    return {
        "message_id": ident(d.get("message_id"), "data.message_id"),
        "text": text(d.get("text"), "data.text", required=False) or "",
        "in_reply_to": ident(d.get("in_reply_to"), "data.in_reply_to", required=False),
        "retrieval_id": ident(d.get("retrieval_id"), "data.retrieval_id", required=False),
        **_usage(d),
        "groundedness": groundedness,
        "unanswered": bool(boolean(d.get("unanswered"), "data.unanswered")),
        "cited": [clean_str(c)[:MAX_ID] for c in cited[:MAX_CHUNKS]] if cited else [],
    }


def _feedback(d: dict[str, Any]) -> dict[str, Any]:
    rating = d.get("rating")
    if rating not in RATINGS:
        raise RecordError("invalid_record", "data.rating must be 'positive' or 'negative'")
    return {
        "message_id": ident(d.get("message_id"), "data.message_id"),
        "rating": rating,
        "comment": text(d.get("comment"), "data.comment", required=False, limit=2000),
    }


def _custom(d: dict[str, Any]) -> dict[str, Any]:
    payload = d.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise RecordError("invalid_record", "data.payload must be an object")
    return {
        "attributes": small_object(d.get("attributes"), "data.attributes") or {},
        "payload": json_value(payload) if payload is not None else None,
        "entity_type": ident(d.get("entity_type"), "data.entity_type", required=False),
        "entity_id": ident(d.get("entity_id"), "data.entity_id", required=False),
    }


VALIDATORS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "conversation.start": _start,
    "conversation.end": _end,
    "conversation.resolution": _resolution,
    "conversation.outcome": _outcome,
    "message.user": _user,
    "message.retrieval": _retrieval,
    "model.call": _model_call,
    "message.answer": _answer,
    "message.feedback": _feedback,
}


def _is_custom(kind: str) -> bool:
    try:
        return category_of(kind) is Category.CUSTOM
    except InvalidInput:
        return False


def validate_data(kind: str, data: Any) -> dict[str, Any]:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecordError("invalid_record", "data must be an object")
    if kind.startswith("custom."):
        return _custom(data)
    return VALIDATORS[kind](data)


def parse_sdk_record(raw: Any, index: int) -> IngestRecord:
    """Validate one SDK record; an invalid one comes back with ``error`` set."""
    key = raw.get("key") if isinstance(raw, dict) else None
    safe_key = key if isinstance(key, str) and 0 < len(key) <= MAX_ID else f"#{index}"
    try:
        if not isinstance(raw, dict):
            raise RecordError("invalid_record", "a record must be an object")
        allowed = {"key", "type", "chatbot_id", "conversation_id", "occurred_at", "data"}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise RecordError("invalid_record", f"unknown record field {unknown[0]!r}")
        key = ident(raw.get("key"), "key")
        kind = raw.get("type")
        if not isinstance(kind, str) or not (
            kind in VALIDATORS or (kind.startswith("custom.") and _is_custom(kind))
        ):
            raise RecordError(
                "invalid_record",
                f"type must be one of {', '.join(VALIDATORS)} or a 'custom.' action",
            )
        record = IngestRecord(
            key=str(key),
            type=kind,
            chatbot_id=ident(raw.get("chatbot_id"), "chatbot_id"),
            conversation=ident(raw.get("conversation_id"), "conversation_id"),
            data=validate_data(kind, raw.get("data")),
            occurred_at=timestamp(raw.get("occurred_at")),
            digest=content_digest(raw),
        )
    except RecordError as exc:
        return IngestRecord(safe_key, "invalid", None, None, {}, error=exc)
    return record
