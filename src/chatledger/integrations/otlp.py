"""OTLP/HTTP trace ingest: decode ``ExportTraceServiceRequest`` (binary protobuf or the OTLP
JSON encoding) and map spans that follow the OpenTelemetry GenAI semantic conventions (and
OpenInference's) to ingest records.

Mapping (one span can give several records; each has an idempotency key derived from the
trace and span ids, or from the message content, so a re-sent span is stored once):

- ``gen_ai.operation.name`` = chat / text_completion / generate_content (or OpenInference
  ``LLM`` spans): the trailing user messages of ``gen_ai.input.messages`` become
  ``message.user``, the span a ``model.call`` (provider, models, token usage, latency, finish
  reasons, prompt), the text of ``gen_ai.output.messages`` a ``message.answer``;
- embeddings: a ``model.call``;
- retrieval (``gen_ai.retrieval.documents``, OpenInference ``retrieval.documents.N.document.*``
  or ``RETRIEVER`` spans): ``message.retrieval`` with every document's id, score and content;
- a conversation id seen for the first time (``gen_ai.conversation.id``, else OpenInference
  ``session.id``, else the trace id): ``conversation.start``;
- anything else, or a span without a known chatbot: ``integration.span``, the raw span with
  all its attributes, events and links (never dropped).

The chatbot a span belongs to: span attribute ``chatledger.chatbot.id``, else the same
resource attribute, else the request header ``X-ChatLedger-Chatbot-Id``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from chatledger.integrations.records import (
    IngestRecord,
    RecordError,
    SpanRef,
    content_digest,
    iso_from_nanos,
    json_value,
    validate_data,
)

CHATBOT_ATTRIBUTES = ("chatledger.chatbot.id", "chatledger.chatbot_id")
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
MODEL_OPERATIONS = frozenset({"embeddings"})
MAX_ATTRIBUTE_DEPTH = 10


class OtlpDecodeError(Exception):
    """The request body is not a valid ExportTraceServiceRequest (answered with 400)."""


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    status_code: int = 0
    status_message: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    """Why the span itself is invalid (bad ids): it is rejected, its neighbours are not."""


# -- binary protobuf ---------------------------------------------------------------------------


def _pb_value(value: Any, depth: int = 0) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bool_value":
        return value.bool_value
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if depth >= MAX_ATTRIBUTE_DEPTH:
        return "[nested too deeply]"
    if which == "array_value":
        return [_pb_value(v, depth + 1) for v in value.array_value.values]
    return {kv.key: _pb_value(kv.value, depth + 1) for kv in value.kvlist_value.values}


def _pb_attrs(items: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in items}


def _pb_id(raw: bytes, size: int, what: str) -> tuple[str, str | None]:
    if len(raw) != size or not any(raw):
        return raw.hex(), f"{what} must be {size} bytes and not all zero"
    return raw.hex(), None


def decode_protobuf(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise OtlpDecodeError(
            f"the body is not a protobuf ExportTraceServiceRequest: {exc}"
        ) from exc
    spans: list[Span] = []
    for rs in request.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for sp in ss.spans:
                trace_id, bad_trace = _pb_id(sp.trace_id, 16, "traceId")
                span_id, bad_span = _pb_id(sp.span_id, 8, "spanId")
                span = Span(
                    trace_id,
                    span_id,
                    sp.parent_span_id.hex(),
                    sp.name,
                    sp.kind,
                    sp.start_time_unix_nano,
                    sp.end_time_unix_nano,
                    _pb_attrs(sp.attributes),
                    resource,
                    scope,
                    sp.status.code,
                    sp.status.message,
                    error=bad_trace or bad_span,
                )
                if sp.events:
                    span.events = [
                        {
                            "name": e.name,
                            "time": iso_from_nanos(e.time_unix_nano),
                            "attributes": _pb_attrs(e.attributes),
                        }
                        for e in sp.events
                    ]
                if sp.links:
                    span.links = [
                        {
                            "trace_id": link.trace_id.hex(),
                            "span_id": link.span_id.hex(),
                            "attributes": _pb_attrs(link.attributes),
                        }
                        for link in sp.links
                    ]
                spans.append(span)
    return spans


# -- OTLP JSON ---------------------------------------------------------------------------------


def _bad(message: str) -> OtlpDecodeError:
    return OtlpDecodeError(f"invalid OTLP JSON: {message}")


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"{what} must be an array")
    return value


def _obj(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"{what} must be an object")
    return value


def _int64(value: Any, what: str) -> int:
    """int64/uint64/fixed64 fields: decimal strings (or numbers) in OTLP JSON."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise _bad(f"{what} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _bad(f"{what} must be an integer (a decimal string)")


def _json_value(value: Any, depth: int = 0) -> Any:
    if not isinstance(value, dict):
        raise _bad("an attribute value must be an AnyValue object")
    if "stringValue" in value:
        return value["stringValue"] if isinstance(value["stringValue"], str) else str(value)
    if "intValue" in value:
        return _int64(value["intValue"], "intValue")
    if "doubleValue" in value:
        number = value["doubleValue"]
        if isinstance(number, str):  # proto3 JSON spells NaN and infinities as strings
            try:
                return float(number)
            except ValueError:
                raise _bad("doubleValue must be a number") from None
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise _bad("doubleValue must be a number")
        return float(number)
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "bytesValue" in value:
        return value["bytesValue"] if isinstance(value["bytesValue"], str) else None
    if depth >= MAX_ATTRIBUTE_DEPTH:
        return "[nested too deeply]"
    if "arrayValue" in value:
        items = _list(_obj(value["arrayValue"], "arrayValue").get("values"), "arrayValue.values")
        return [_json_value(v, depth + 1) for v in items]
    if "kvlistValue" in value:
        items = _list(_obj(value["kvlistValue"], "kvlistValue").get("values"), "kvlist")
        return _json_attrs(items, depth + 1)
    return None  # an empty AnyValue


def _json_attrs(items: Any, depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in _list(items, "attributes"):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise _bad("each attribute must be an object with a string key")
        out[kv["key"]] = _json_value(kv.get("value") or {}, depth)
    return out


def _json_id(value: Any, size: int, what: str) -> tuple[str, str | None]:
    """OTLP JSON ids are hex; some exporters send protobuf-JSON base64: accept both."""
    if value is None or value == "":
        return "", f"{what} is missing"
    if not isinstance(value, str):
        return "", f"{what} must be a hex string"
    raw: bytes | None = None
    if len(value) == size * 2:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != size or not any(raw):
        return value[:64], f"{what} must be {size * 2} hex characters and not all zero"
    return raw.hex(), None


def decode_json(body: bytes) -> list[Span]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _bad("the body must be an ExportTraceServiceRequest object")
    spans: list[Span] = []
    for rs in _list(data.get("resourceSpans"), "resourceSpans"):
        rs = _obj(rs, "resourceSpans[]")
        resource = _json_attrs(_obj(rs.get("resource"), "resource").get("attributes"))
        for ss in _list(rs.get("scopeSpans"), "scopeSpans"):
            ss = _obj(ss, "scopeSpans[]")
            scope = _obj(ss.get("scope"), "scope").get("name") or ""
            for sp in _list(ss.get("spans"), "spans"):
                sp = _obj(sp, "spans[]")
                trace_id, bad_trace = _json_id(sp.get("traceId"), 16, "traceId")
                span_id, bad_span = _json_id(sp.get("spanId"), 8, "spanId")
                parent = sp.get("parentSpanId") or ""
                parent_id = _json_id(parent, 8, "parentSpanId")[0] if parent else ""
                status = _obj(sp.get("status"), "status")
                kind = sp.get("kind", 0)
                if isinstance(kind, bool) or not isinstance(kind, int):
                    raise _bad("span kind must be an integer (enum names are not allowed)")
                code = status.get("code", 0)
                if isinstance(code, bool) or not isinstance(code, int):
                    raise _bad("status code must be an integer (enum names are not allowed)")
                span = Span(
                    trace_id,
                    span_id,
                    parent_id,
                    str(sp.get("name") or ""),
                    kind,
                    _int64(sp.get("startTimeUnixNano"), "startTimeUnixNano"),
                    _int64(sp.get("endTimeUnixNano"), "endTimeUnixNano"),
                    _json_attrs(sp.get("attributes")),
                    resource,
                    str(scope),
                    code,
                    str(status.get("message") or ""),
                    error=bad_trace or bad_span,
                )
                for event in _list(sp.get("events"), "events"):
                    event = _obj(event, "events[]")
                    span.events.append(
                        {
                            "name": str(event.get("name") or ""),
                            "time": iso_from_nanos(
                                _int64(event.get("timeUnixNano"), "timeUnixNano")
                            ),
                            "attributes": _json_attrs(event.get("attributes")),
                        }
                    )
                for link in _list(sp.get("links"), "links"):
                    link = _obj(link, "links[]")
                    span.links.append(
                        {
                            "trace_id": str(link.get("traceId") or ""),
                            "span_id": str(link.get("spanId") or ""),
                            "attributes": _json_attrs(link.get("attributes")),
                        }
                    )
                spans.append(span)
    return spans


# -- responses ---------------------------------------------------------------------------------


def export_response(rejected: int, message: str, *, json: bool) -> bytes:
    """ExportTraceServiceResponse: ``partial_success`` set only when spans were rejected."""
    if json:
        if not rejected and not message:
            return b"{}"
        return orjson.dumps(
            {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}}
        )
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return bytes(response.SerializeToString())


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def status_body(grpc_code: int, message: str) -> bytes:
    """A binary ``google.rpc.Status`` (code = field 1, message = field 2), as OTLP/HTTP asks
    for the body of a 4xx/5xx answer to a protobuf request."""
    text = message.encode("utf-8")
    return b"\x08" + _varint(grpc_code) + b"\x12" + _varint(len(text)) + text


# -- mapping -----------------------------------------------------------------------------------


def _first(attrs: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def _structured(value: Any) -> Any:
    """GenAI message attributes arrive as JSON strings or as structured values."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _message_text(message: dict[str, Any]) -> str:
    parts = message.get("parts")
    if isinstance(parts, list):
        texts = []
        for part in parts:
            if isinstance(part, dict) and part.get("type", "text") == "text":
                content = part.get("content", part.get("text"))
                if isinstance(content, str):
                    texts.append(content)
        return "".join(texts)
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style content parts
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _indexed(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """OpenInference flattened lists: ``prefix.N.rest`` -> [{rest: value}, ...] by N."""
    items: dict[int, dict[str, Any]] = {}
    start = len(prefix) + 1
    for key, value in attrs.items():
        if not key.startswith(prefix + "."):
            continue
        index, _, rest = key[start:].partition(".")
        if index.isdigit() and rest:
            items.setdefault(int(index), {})[rest] = value
    return [items[i] for i in sorted(items)]


def _messages(attrs: dict[str, Any], semconv: str, openinference: str) -> list[dict[str, Any]]:
    value = _structured(attrs.get(semconv))
    if isinstance(value, list):
        return [m if isinstance(m, dict) else {"content": m} for m in value]
    if isinstance(value, dict):
        return [value]
    found = []
    for item in _indexed(attrs, openinference):
        found.append({"role": item.get("message.role"), "content": item.get("message.content")})
    return found


def _documents(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    value = _structured(attrs.get("gen_ai.retrieval.documents"))
    docs: list[dict[str, Any]] = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                docs.append(item)
    for item in _indexed(attrs, "retrieval.documents"):
        metadata = _structured(item.get("document.metadata"))
        docs.append(
            {
                "id": item.get("document.id"),
                "score": item.get("document.score"),
                "content": item.get("document.content"),
                "metadata": metadata if isinstance(metadata, dict) else None,
            }
        )
    return docs


def _chunk(doc: dict[str, Any], rank: int) -> dict[str, Any]:
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else None
    meta = metadata or {}
    doc_id = _first(meta, "document_id", "doc_id", "file_id", "ref_doc_id")
    score = doc.get("score")
    if isinstance(score, str):
        try:
            score = float(score)
        except ValueError:
            score = None
    content = doc.get("content", doc.get("text"))
    chunk_id = doc.get("id")
    source = _first(doc, "source_id", "source", "uri", "url") or _first(
        meta, "source", "file_path", "file_name", "url", "uri"
    )
    return {
        "rank": rank,
        "chunk_id": str(chunk_id) if chunk_id is not None else None,
        "document_id": str(doc_id) if doc_id is not None else None,
        "source": str(source) if source is not None else None,
        "score": score if isinstance(score, int | float) and not isinstance(score, bool) else None,
        "text": content if isinstance(content, str) else None,
        "metadata": metadata,
    }


_LLM_KEYS = frozenset(
    {
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.system",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.response.id",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.prompt_tokens",
        "gen_ai.usage.completion_tokens",
        "gen_ai.response.finish_reasons",
        "gen_ai.conversation.id",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.retrieval.documents",
        "gen_ai.retrieval.query.text",
        "gen_ai.retrieval.top_k",
        "gen_ai.data_source.id",
        "llm.model_name",
        "llm.provider",
        "llm.system",
        "llm.token_count.prompt",
        "llm.token_count.completion",
        "openinference.span.kind",
        "session.id",
        "user.id",
        "enduser.id",
        "input.value",
        *CHATBOT_ATTRIBUTES,
    }
)
_FLATTENED = (
    "llm.input_messages.",
    "llm.output_messages.",
    "retrieval.documents.",
    "gen_ai.request.",
)


def _rest(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes the mapping did not consume: kept beside the mapped event."""
    return {k: v for k, v in attrs.items() if k not in _LLM_KEYS and not k.startswith(_FLATTENED)}


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Context:
    span: Span
    index: int
    chatbot_id: str | None
    conversation: str
    extra: dict[str, Any]
    started: str | None


def _classify(span: Span) -> str:
    attrs = span.attributes
    operation = str(attrs.get("gen_ai.operation.name") or "").lower()
    oi_kind = str(attrs.get("openinference.span.kind") or "").upper()
    if operation in LLM_OPERATIONS or oi_kind == "LLM":
        return "llm"
    if operation in MODEL_OPERATIONS or oi_kind == "EMBEDDING":
        return "model"
    if (
        operation == "retrieval"
        or oi_kind == "RETRIEVER"
        or "gen_ai.retrieval.documents" in attrs
        or "retrieval.documents.0.document.id" in attrs
        or "retrieval.documents.0.document.content" in attrs
    ):
        return "retrieval"
    return "raw"


def _record(ctx: _Context, key: str, kind: str, data: dict[str, Any]) -> IngestRecord:
    validated = validate_data(kind, data)
    return IngestRecord(
        key=key,
        type=kind,
        chatbot_id=ctx.chatbot_id,
        conversation=ctx.conversation,
        data=validated,
        occurred_at=ctx.started,
        digest=content_digest([kind, ctx.chatbot_id, ctx.conversation, validated]),
        span=SpanRef(ctx.span.trace_id, ctx.span.span_id, ctx.index),
        extra=ctx.extra,
    )


def _usage(attrs: dict[str, Any], span: Span) -> dict[str, Any]:
    latency = (span.end_ns - span.start_ns) / 1e6 if span.end_ns >= span.start_ns > 0 else None
    reasons = attrs.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, str):
        reasons = [reasons]
    return {
        "provider": _first(
            attrs, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"
        ),
        "request_model": _first(attrs, "gen_ai.request.model", "llm.model_name"),
        "response_model": _first(attrs, "gen_ai.response.model"),
        "input_tokens": _first(
            attrs,
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.token_count.prompt",
        ),
        "output_tokens": _first(
            attrs,
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
        ),
        "latency_ms": round(latency, 3) if latency is not None else None,
        "finish_reasons": [str(r) for r in reasons] if isinstance(reasons, list) else None,
        "response_id": _first(attrs, "gen_ai.response.id"),
    }


def _request_params(attrs: dict[str, Any]) -> dict[str, Any] | None:
    params = {
        k[len("gen_ai.request.") :]: v
        for k, v in attrs.items()
        if k.startswith("gen_ai.request.") and k != "gen_ai.request.model"
    }
    return params or None


def _llm(ctx: _Context, operation: str) -> list[IngestRecord]:
    span, attrs = ctx.span, ctx.span.attributes
    base = f"otlp:{span.trace_id}:{span.span_id}"
    records: list[IngestRecord] = []
    inputs = _messages(attrs, "gen_ai.input.messages", "llm.input_messages")
    outputs = _messages(attrs, "gen_ai.output.messages", "llm.output_messages")
    last_non_user = max(
        (i for i, m in enumerate(inputs) if str(m.get("role") or "user") != "user"), default=-1
    )
    reply_to: str | None = None
    for index in range(last_non_user + 1, len(inputs)):
        message_text = _message_text(inputs[index])
        if not message_text.strip():
            continue
        digest = _sha(str(ctx.chatbot_id), ctx.conversation, str(index), message_text)
        reply_to = f"otel-{digest[:24]}"
        records.append(
            _record(
                ctx,
                f"otlp:user:{digest[:40]}",
                "message.user",
                {"message_id": reply_to, "text": message_text},
            )
        )
    usage = _usage(attrs, span)
    answer_text = "".join(
        _message_text(m) for m in outputs if str(m.get("role") or "assistant") != "user"
    )
    if usage["finish_reasons"] is None:
        found = [str(m["finish_reason"]) for m in outputs if m.get("finish_reason")]
        usage["finish_reasons"] = found or None
    answer_id = f"span-{span.trace_id}-{span.span_id}" if answer_text else None
    failed = span.status_code == 2
    call = {
        "call_id": f"{span.trace_id}-{span.span_id}",
        "message_id": answer_id,
        "operation": operation,
        **usage,
        "messages": inputs or None,
        "output": outputs or None,
        "request": _request_params(attrs),
        "error": (span.status_message or "error") if failed else None,
        "error_type": str(attrs.get("error.type") or "error") if failed else None,
    }
    rest = _rest(attrs)
    record = _record(ctx, f"{base}:call", "model.call", call)
    if rest:
        record.data["otel"] = json_value(rest)
    records.append(record)
    if answer_text:
        answer = {"message_id": answer_id, "text": answer_text, "in_reply_to": reply_to, **usage}
        records.append(_record(ctx, f"{base}:answer", "message.answer", answer))
    return records


def _retrieval(ctx: _Context) -> list[IngestRecord]:
    span, attrs = ctx.span, ctx.span.attributes
    docs = _documents(attrs)
    data = {
        "retrieval_id": f"{span.trace_id}-{span.span_id}",
        "query": _first(attrs, "gen_ai.retrieval.query.text", "input.value"),
        "data_source": _first(attrs, "gen_ai.data_source.id"),
        "top_k": _first(attrs, "gen_ai.retrieval.top_k"),
        "chunks": [_chunk(doc, i + 1) for i, doc in enumerate(docs)],
    }
    if not isinstance(data["query"], str):
        data["query"] = None
    record = _record(
        ctx, f"otlp:{span.trace_id}:{span.span_id}:retrieval", "message.retrieval", data
    )
    rest = _rest(attrs)
    if rest:
        record.data["otel"] = json_value(rest)
    return [record]


def raw_record(
    span: Span, index: int, chatbot_id: str | None, conversation: str | None, reason: str
) -> IngestRecord:
    data: dict[str, Any] = {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "reason": reason,
        "attributes": json_value(span.attributes),
        "resource": json_value(span.resource),
    }
    if span.events:
        data["events"] = json_value(span.events)
    if span.links:
        data["links"] = json_value(span.links)
    if span.status_code or span.status_message:
        data["status"] = {"code": span.status_code, "message": span.status_message}
    return IngestRecord(
        key=f"otlp:{span.trace_id}:{span.span_id}",
        type="integration.span",
        chatbot_id=chatbot_id,
        conversation=conversation,
        data=data,
        occurred_at=iso_from_nanos(span.start_ns),
        digest=content_digest(data),
        span=SpanRef(span.trace_id, span.span_id, index),
        extra=_extra(span, full=True),
    )


def _extra(span: Span, *, full: bool) -> dict[str, Any]:
    """Where a record came from. Mapped events keep the ids, the span name and the service
    (start time is ``occurred_at``, duration is ``latency_ms``); raw spans keep everything."""
    extra: dict[str, Any] = {
        "otel.trace_id": span.trace_id,
        "otel.span_id": span.span_id,
        "otel.span.name": span.name[:200],
    }
    if span.parent_span_id:
        extra["otel.parent_span_id"] = span.parent_span_id
    service = span.resource.get("service.name")
    if isinstance(service, str):
        extra["service.name"] = service[:200]
    if full:
        extra["otel.span.kind"] = span.kind
        end = iso_from_nanos(span.end_ns)
        if end:
            extra["otel.end_time"] = end
        if span.scope:
            extra["otel.scope.name"] = span.scope[:200]
        if span.status_code:
            extra["otel.status_code"] = {1: "OK", 2: "ERROR"}.get(
                span.status_code, str(span.status_code)
            )
    return extra


def _span_chatbot(span: Span, header_chatbot: str | None) -> str | None:
    chatbot = _first(span.attributes, *CHATBOT_ATTRIBUTES) or _first(
        span.resource, *CHATBOT_ATTRIBUTES
    )
    return str(chatbot) if chatbot is not None else header_chatbot


def _span_conversation(span: Span) -> str | None:
    conversation = _first(span.attributes, "gen_ai.conversation.id", "session.id") or _first(
        span.resource, "gen_ai.conversation.id", "session.id"
    )
    return str(conversation)[:200] if conversation is not None else None


def map_spans(
    spans: list[Span], known_chatbot: Callable[[str], bool], header_chatbot: str | None
) -> Iterator[IngestRecord]:
    """Ingest records for ``spans``, in order (a rejected span yields a record with ``error``)."""
    places = [
        (_span_chatbot(span, header_chatbot), _span_conversation(span) or f"trace-{span.trace_id}")
        for span in spans
    ]
    users: dict[tuple[str | None, str], str] = {}
    for span, place in zip(spans, places, strict=True):
        user = _first(span.attributes, "user.id", "enduser.id") or _first(
            span.resource, "user.id", "enduser.id"
        )
        if user is not None and place not in users:
            users[place] = str(user)[:150]
    started: set[tuple[str | None, str]] = set()
    for index, (span, place) in enumerate(zip(spans, places, strict=True)):
        if span.error is not None:
            yield IngestRecord(
                f"otlp:span#{index}",
                "integration.span",
                None,
                None,
                {},
                span=SpanRef(span.trace_id, span.span_id, index),
                error=RecordError("invalid_span", span.error),
            )
            continue
        chatbot, conversation = place
        kind = _classify(span)
        if kind == "raw" or chatbot is None or not known_chatbot(chatbot):
            reason = "unmapped"
            if kind != "raw":
                reason = "no_chatbot" if chatbot is None else "unknown_chatbot"
            named = _span_conversation(span)
            mapped = named if chatbot is not None and known_chatbot(chatbot) else None
            yield raw_record(span, index, chatbot, mapped, reason)
            continue
        ctx = _Context(
            span,
            index,
            chatbot,
            conversation,
            _extra(span, full=False),
            iso_from_nanos(span.start_ns),
        )
        try:
            records = []
            if place not in started:
                started.add(place)
                start = _record(
                    ctx,
                    f"otlp:conversation:{_sha(chatbot, conversation)[:40]}",
                    "conversation.start",
                    {"user_id": users.get(place), "channel": "otlp"},
                )
                # whoever starts it first wins; later spans naming a user are not a conflict
                start.digest = content_digest(["conversation.start", chatbot, conversation])
                records.append(start)
            if kind == "retrieval":
                records += _retrieval(ctx)
            else:
                operation = str(
                    span.attributes.get("gen_ai.operation.name")
                    or ("chat" if kind == "llm" else "embeddings")
                )
                records += (
                    _llm(ctx, operation[:64]) if kind == "llm" else _model_only(ctx, operation[:64])
                )
        except RecordError as exc:
            yield raw_record(span, index, chatbot, conversation, f"invalid: {exc.message}"[:300])
            continue
        yield from records


def _model_only(ctx: _Context, operation: str) -> list[IngestRecord]:
    span, attrs = ctx.span, ctx.span.attributes
    failed = span.status_code == 2
    call = {
        "call_id": f"{span.trace_id}-{span.span_id}",
        "operation": operation,
        **_usage(attrs, span),
        "request": _request_params(attrs),
        "error": (span.status_message or "error") if failed else None,
        "error_type": str(attrs.get("error.type") or "error") if failed else None,
    }
    record = _record(ctx, f"otlp:{span.trace_id}:{span.span_id}:call", "model.call", call)
    rest = _rest(attrs)
    if rest:
        record.data["otel"] = json_value(rest)
    return [record]
