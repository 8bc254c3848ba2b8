"""Decoding and mapping details: both OTLP encodings agree, odd values are made safe, and
records too large for the ledger are trimmed (optional parts) or refused (never silently)."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from chatledger.events import Actor
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Role
from chatledger.integrations.otlp import decode_json, decode_protobuf, map_spans
from chatledger.integrations.records import parse_sdk_record
from chatledger.integrations.service import IntegrationService
from tests.integrations.server import Server


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _request() -> ExportTraceServiceRequest:
    nested = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                _kv("role", AnyValue(string_value="user")),
                _kv("n", AnyValue(int_value=2**60)),
                _kv("ok", AnyValue(bool_value=True)),
                _kv("list", AnyValue(array_value=ArrayValue(values=[AnyValue(double_value=0.5)]))),
            ]
        )
    )
    span = Span(
        trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
        span_id=bytes.fromhex("b7ad6b7169203331"),
        parent_span_id=bytes.fromhex("00f067aa0ba902b7"),
        name="chat",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_700_000_000_123_456_789,
        end_time_unix_nano=1_700_000_001_000_000_000,
        attributes=[
            _kv("gen_ai.operation.name", AnyValue(string_value="chat")),
            _kv("gen_ai.usage.input_tokens", AnyValue(int_value=10)),
            _kv("structured", nested),
            _kv("raw", AnyValue(bytes_value=b"\x00\x01")),
        ],
        events=[Span.Event(name="gen_ai.choice", time_unix_nano=1_700_000_000_500_000_000)],
    )
    span.status.code = 2
    span.status.message = "boom"
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [_kv("service.name", AnyValue(string_value="svc"))]},
                scope_spans=[ScopeSpans(scope={"name": "lib"}, spans=[span])],
            )
        ]
    )


def test_protobuf_and_json_encodings_decode_alike() -> None:
    request = _request()
    from_proto = decode_protobuf(request.SerializeToString())
    # protobuf's own JSON mapping (base64 ids, integer enums) is accepted too
    as_json = json_format.MessageToJson(request, use_integers_for_enums=True)
    from_json = decode_json(as_json.encode())
    # and the OTLP JSON spelling: hex ids, int64 as strings
    otlp = json.loads(as_json)
    spans = otlp["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["traceId"] = "0AF7651916CD43DD8448EB211C80319C"  # case-insensitive hex
    spans[0]["spanId"] = "b7ad6b7169203331"
    spans[0]["parentSpanId"] = "00f067aa0ba902b7"
    from_otlp_json = decode_json(json.dumps(otlp).encode())
    assert from_proto == from_json == from_otlp_json
    (span,) = from_proto
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id == "00f067aa0ba902b7"
    assert span.start_ns == 1_700_000_000_123_456_789
    assert span.attributes["structured"] == {"role": "user", "n": 2**60, "ok": True, "list": [0.5]}
    assert span.attributes["raw"] == "AAE="
    assert span.status_code == 2 and span.status_message == "boom"
    assert span.events[0]["name"] == "gen_ai.choice"
    assert span.resource == {"service.name": "svc"}


def test_unsafe_values_are_made_safe_for_the_canonical_encoding() -> None:
    (span,) = decode_protobuf(_request().SerializeToString())
    (record,) = map_spans([span], lambda _: False, None)
    assert record.type == "integration.span" and record.data["reason"] == "no_chatbot"
    structured = record.data["attributes"]["structured"]
    assert structured["n"] == str(2**60)  # beyond 2**53: kept exactly, as a string
    assert record.extra["otel.status_code"] == "ERROR"
    assert record.extra["otel.end_time"] == "2023-11-14T22:13:21.000000Z"
    assert record.occurred_at == "2023-11-14T22:13:20.123456Z"


def test_a_mapped_span_that_fails_validation_is_kept_raw() -> None:
    (span,) = decode_protobuf(_request().SerializeToString())
    span.attributes["gen_ai.request.model"] = "m" * 500  # longer than any id may be
    records = list(map_spans([span], lambda _: True, "bot_x"))
    assert [r.type for r in records] == ["integration.span"]
    assert records[0].data["reason"].startswith("invalid: data.request_model")


def test_sdk_records_are_validated_one_by_one() -> None:
    ok = parse_sdk_record(
        {
            "key": "k",
            "type": "message.user",
            "chatbot_id": "b",
            "conversation_id": "c",
            "occurred_at": "2026-01-02T03:04:05+02:00",
            "data": {"message_id": "m", "text": "hi"},
        },
        0,
    )
    assert ok.error is None and ok.occurred_at == "2026-01-02T01:04:05.000000Z"
    bad = [
        {"key": "k", "type": "message.user", "chatbot_id": "b", "conversation_id": "c"},
        {"key": "k", "type": "nope", "chatbot_id": "b", "conversation_id": "c"},
        {
            "key": "k",
            "type": "message.feedback",
            "chatbot_id": "b",
            "conversation_id": "c",
            "data": {"message_id": "m", "rating": "great"},
        },
        {"key": "k\x00", "type": "conversation.end", "chatbot_id": "b", "conversation_id": "c"},
        {
            "key": "k",
            "type": "conversation.end",
            "chatbot_id": "b",
            "conversation_id": "c",
            "extra": 1,
        },
        {
            "key": "k",
            "type": "model.call",
            "chatbot_id": "b",
            "conversation_id": "c",
            "data": {"call_id": "x", "input_tokens": -1},
        },
        "not an object",
    ]
    errors = [parse_sdk_record(raw, i).error for i, raw in enumerate(bad)]
    assert all(e is not None and e.code == "invalid_record" for e in errors)
    assert [e.message for e in errors if e][:3] == [
        "data.message_id must be a non-empty string of <= 200",
        errors[1].message if errors[1] else "",
        "data.rating must be 'positive' or 'negative'",
    ]


def test_oversized_parts_are_trimmed_or_refused(server: Server) -> None:
    service = IntegrationService(server.platform.ledger, server.platform.chatbots)
    agent = Principal(
        Actor("api_key", "mapping-test", "agent"), server.workspace_id, Role.AGENT, "api_key"
    )
    big_history = [{"role": "system", "content": "x" * 70_000}, {"role": "user", "content": "q"}]

    def record(key: str, kind: str, data: dict[str, Any]) -> Any:
        return parse_sdk_record(
            {
                "key": key,
                "type": kind,
                "chatbot_id": server.chatbot_id,
                "conversation_id": "big",
                "data": data,
            },
            0,
        )

    results = service.ingest(
        agent,
        [
            record("big-1", "model.call", {"call_id": "c1", "messages": big_history}),
            record("big-2", "message.user", {"message_id": "m1", "text": "y" * 70_000}),
            record("big-3", "message.user", {"message_id": "m2", "text": "fits"}),
        ],
        source="sdk",
    )
    assert [r.status for r in results] == ["created", "rejected", "created"]
    assert results[1].code == "too_large"
    call = server.platform.ledger.read(results[0].seq or 0)
    assert call.payload is not None and "messages" not in call.payload
    omitted = call.payload["omitted"]["messages"]
    assert omitted["size"] > 70_000 and len(omitted["sha256"]) == 64


def test_a_refused_first_record_does_not_leave_half_a_conversation(server: Server) -> None:
    service = IntegrationService(server.platform.ledger, server.platform.chatbots)
    agent = Principal(
        Actor("api_key", "mapping-test", "agent"), server.workspace_id, Role.AGENT, "api_key"
    )

    def user(key: str, text: str) -> Any:
        return parse_sdk_record(
            {
                "key": key,
                "type": "message.user",
                "chatbot_id": server.chatbot_id,
                "conversation_id": "fresh",
                "data": {"message_id": key, "text": text},
            },
            0,
        )

    start = server.platform.ledger.size()
    results = service.ingest(agent, [user("f-1", "z" * 70_000), user("f-2", "small")], source="sdk")
    assert [r.status for r in results] == ["rejected", "created"]
    actions = [r.entry.action for r in server.records(start)]
    assert actions == ["conversation.start", "message.user", "request.rejected"]
    started = server.records(start)[0]
    assert started.entry.attributes["implicit"] is True
    cid = started.entry.attributes["conversation_id"]
    assert server.platform.chat.find(cid) is not None
    ((start_seq,),) = server.platform.ledger.store.query(
        "SELECT start_seq FROM integration_conversations WHERE conversation_id = ?", (cid,)
    )
    assert server.platform.ledger.entry(int(start_seq)).action == "conversation.start"
