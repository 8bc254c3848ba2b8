"""OTLP/HTTP edge: both encodings, and every refusal answered as the OTLP specification asks
(status code, google.rpc.Status body) and recorded in the ledger."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from chatledger.api.routes import otlp as otlp_route
from chatledger.client import ledger_conversation_id
from chatledger.guard import RateLimit, RateLimiter
from chatledger.ledger.service import Record
from tests.integrations.server import Server

TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"


def _span(span_id: str = SPAN, trace_id: str = TRACE, **attributes: Any) -> dict[str, Any]:
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": "1718000000000000000",
        "endTimeUnixNano": "1718000001200000000",
        "attributes": [{"key": k, "value": v} for k, v in attributes.items()],
        "status": {"code": 1},
    }


def _request(bot: str, *spans: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "json-app"}},
                        {"key": "chatledger.chatbot.id", "value": {"stringValue": bot}},
                    ]
                },
                "scopeSpans": [{"scope": {"name": "manual"}, "spans": list(spans)}],
                "unknownField": {"ignored": True},
            }
        ]
    }


def _chat(span_id: str, conversation: str) -> dict[str, Any]:
    return _span(
        span_id,
        **{
            "gen_ai.operation.name": {"stringValue": "chat"},
            "gen_ai.provider.name": {"stringValue": "openai"},
            "gen_ai.request.model": {"stringValue": "gpt-4o"},
            "gen_ai.usage.input_tokens": {"intValue": "1234"},
            "gen_ai.usage.output_tokens": {"intValue": 56},
            "gen_ai.conversation.id": {"stringValue": conversation},
            "gen_ai.response.finish_reasons": {"arrayValue": {"values": [{"stringValue": "stop"}]}},
            "gen_ai.input.messages": {
                "arrayValue": {
                    "values": [
                        {
                            "kvlistValue": {
                                "values": [
                                    {"key": "role", "value": {"stringValue": "user"}},
                                    {
                                        "key": "parts",
                                        "value": {
                                            "arrayValue": {
                                                "values": [
                                                    {
                                                        "kvlistValue": {
                                                            "values": [
                                                                {
                                                                    "key": "type",
                                                                    "value": {
                                                                        "stringValue": "text"
                                                                    },
                                                                },
                                                                {
                                                                    "key": "content",
                                                                    "value": {"stringValue": "Hi?"},
                                                                },
                                                            ]
                                                        }
                                                    }
                                                ]
                                            }
                                        },
                                    },
                                ]
                            }
                        }
                    ]
                }
            },
            "gen_ai.output.messages": {
                "stringValue": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": "Hello."}]}]
                )
            },
            "app.ratio": {"doubleValue": "NaN"},
            "app.bytes": {"bytesValue": "AAEC"},
        },
    )


def _post(
    server: Server, body: bytes, content_type: str, key: str | None = None, **headers: str
) -> httpx.Response:
    sent = {"content-type": content_type, **headers}
    if key is not None:
        sent["authorization"] = f"Bearer {key}"
    elif "x-api-key" not in headers:
        sent["authorization"] = f"Bearer {server.ingest_key}"
    return httpx.post(f"{server.url}/v1/traces", content=body, headers=sent, timeout=30)


def _new(server: Server, start: int, action: str) -> list[Record]:
    return [r for r in server.records(start) if r.entry.action == action]


def _status(response: httpx.Response) -> status_pb2.Status:
    assert response.headers["content-type"] == "application/x-protobuf"
    status = status_pb2.Status()
    status.ParseFromString(response.content)
    return status


def test_json_encoding_hex_ids_int64_strings_and_structured_values(server: Server) -> None:
    start = server.platform.ledger.size()
    body = json.dumps(_request(server.chatbot_id, _chat(SPAN, "json-conv"))).encode()
    response = _post(server, body, "application/json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}  # full success: partialSuccess unset
    records = server.records(start)
    call = next(r for r in records if r.entry.action == "model.call")
    a = call.entry.attributes
    assert a["otel.trace_id"] == TRACE and a["otel.span_id"] == SPAN
    assert a["gen_ai.usage.input_tokens"] == 1234
    assert a["gen_ai.usage.output_tokens"] == 56
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["occurred_at"] == "2024-06-10T06:13:20.000000Z"
    assert a["latency_ms"] == 1200.0
    assert a["conversation_id"] == ledger_conversation_id(server.chatbot_id, "json-conv")
    assert call.payload is not None
    assert call.payload["otel_attributes"] == {"app.ratio": "NaN", "app.bytes": "AAEC"}
    user = next(r for r in records if r.entry.action == "message.user")
    assert user.payload is not None and user.payload["text"] == "Hi?"
    answer = next(r for r in records if r.entry.action == "message.answer")
    assert answer.payload == {"text": "Hello."}


def test_empty_request_is_a_success(server: Server) -> None:
    response = _post(server, b"", "application/x-protobuf")
    assert response.status_code == 200
    assert (
        ExportTraceServiceResponse.FromString(response.content).HasField("partial_success") is False
    )


def test_partial_success_names_rejected_spans(server: Server) -> None:
    start = server.platform.ledger.size()
    good = _chat("aaaaaaaaaaaaaaaa", "partial-conv")
    bad = _span("not-hex", **{"gen_ai.operation.name": {"stringValue": "chat"}})
    zero = _span("0000000000000000")
    body = json.dumps(_request(server.chatbot_id, good, bad, zero)).encode()
    response = _post(server, body, "application/json")
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"  # int64: a decimal string in OTLP JSON
    assert "span 1: invalid_span: spanId must be 16 hex characters" in partial["errorMessage"]
    assert "span 2" in partial["errorMessage"]
    assert _new(server, start, "message.answer")  # the good span is stored
    (refusal,) = _new(server, start, "request.rejected")
    assert refusal.entry.attributes["rejected"] == 2
    assert refusal.entry.attributes["source"] == "otlp"
    assert refusal.entry.outcome == "denied"


@pytest.mark.parametrize(
    ("body", "content_type", "needle"),
    [
        (b"\x0a\xff\xff\xff\xff\x0f", "application/x-protobuf", "not a protobuf"),
        (b"{not json", "application/json", "not JSON"),
        (b'{"resourceSpans": {"a": 1}}', "application/json", "resourceSpans must be an array"),
        (
            json.dumps(
                {
                    "resourceSpans": [
                        {"scopeSpans": [{"spans": [{**_span(), "kind": "SPAN_KIND_SERVER"}]}]}
                    ]
                }
            ).encode(),
            "application/json",
            "enum names are not allowed",
        ),
        (
            json.dumps(
                {
                    "resourceSpans": [
                        {"scopeSpans": [{"spans": [{**_span(), "startTimeUnixNano": "soon"}]}]}
                    ]
                }
            ).encode(),
            "application/json",
            "startTimeUnixNano must be an integer",
        ),
    ],
)
def test_malformed_payloads_are_400_and_recorded(
    server: Server, body: bytes, content_type: str, needle: str
) -> None:
    start = server.platform.ledger.size()
    response = _post(server, body, content_type)
    assert response.status_code == 400
    if content_type == "application/json":
        error = response.json()
        assert error["code"] == 3  # google.rpc.Code INVALID_ARGUMENT
        assert needle in error["message"]
        assert error["error"]["code"] == "invalid_input"
        assert error["error"]["request_id"] == response.headers["x-request-id"]
    else:
        status = _status(response)
        assert status.code == 3 and needle in status.message
    (event,) = _new(server, start, "request.rejected")
    a = event.entry.attributes
    assert a["reason"] == "invalid_input" and a["status"] == 400 and a["source"] == "otlp"
    assert needle in a["message"]
    assert event.entry.actor["type"] == "api_key"
    assert event.entry.category == "security"


def test_bad_gzip_is_400(server: Server) -> None:
    start = server.platform.ledger.size()
    response = _post(server, b"not gzip", "application/x-protobuf", **{"content-encoding": "gzip"})
    assert response.status_code == 400
    assert "gzip" in _status(response).message
    assert _new(server, start, "request.rejected")


def test_unsupported_media_type_and_encoding_are_415(server: Server) -> None:
    start = server.platform.ledger.size()
    assert _post(server, b"x", "text/plain").status_code == 415
    response = _post(server, b"x", "application/json", **{"content-encoding": "br"})
    assert response.status_code == 415
    assert "Content-Encoding" in response.json()["message"]
    reasons = [e.entry.attributes["reason"] for e in _new(server, start, "request.rejected")]
    assert reasons == ["unsupported_media_type", "unsupported_media_type"]


def test_wrong_and_missing_keys_are_401_and_recorded(server: Server) -> None:
    start = server.platform.ledger.size()
    body = ExportTraceServiceRequest().SerializeToString()
    wrong = server.ingest_key[:-4] + "AAAA"
    response = _post(server, body, "application/x-protobuf", key=wrong)
    assert response.status_code == 401
    assert "invalid API key" in _status(response).message
    response = httpx.post(
        f"{server.url}/v1/traces",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 401
    assert "x-api-key" in response.json()["message"]
    response = _post(server, body, "application/x-protobuf", key="not-a-key")
    assert response.status_code == 401
    failures = _new(server, start, "auth.login_failed")
    assert [f.entry.attributes["reason"] for f in failures] == [
        "wrong_secret",
        "missing_credentials",
        "malformed",
    ]
    assert all(f.entry.outcome == "denied" and f.entry.category == "security" for f in failures)
    # x-api-key works as well as Authorization
    ok = _post(server, body, "application/x-protobuf", **{"x-api-key": server.ingest_key})
    assert ok.status_code == 200


def test_a_role_without_chat_is_403_and_recorded(server: Server) -> None:
    viewer = server.key("viewer")
    start = server.platform.ledger.size()
    response = _post(server, b"", "application/x-protobuf", key=viewer)
    assert response.status_code == 403
    assert "viewer" in _status(response).message
    (denied,) = _new(server, start, "access.denied")
    assert denied.entry.attributes["permission"] == "chat"
    assert denied.entry.actor["role"] == "viewer"


def test_oversized_bodies_and_batches_are_413_and_recorded(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otlp_route.LIMITS, "max_body_bytes", 4096)
    monkeypatch.setattr(otlp_route.LIMITS, "max_spans", 3)
    start = server.platform.ledger.size()
    big = json.dumps({"resourceSpans": [], "pad": "x" * 5000}).encode()
    response = _post(server, big, "application/json")
    assert response.status_code == 413
    assert "larger than 4096 bytes" in response.json()["message"]
    bomb = gzip.compress(b"\x00" * 100_000)
    response = _post(server, bomb, "application/x-protobuf", **{"content-encoding": "gzip"})
    assert response.status_code == 413
    assert "decompressed" in _status(response).message
    many = [_span(f"{i + 1:016x}") for i in range(4)]
    response = _post(
        server, json.dumps(_request(server.chatbot_id, *many)).encode(), "application/json"
    )
    assert response.status_code == 413
    assert "4 spans, more than 3" in response.json()["message"]
    refusals = _new(server, start, "request.rejected")
    assert [r.entry.attributes["reason"] for r in refusals] == ["payload_too_large"] * 3
    assert refusals[1].entry.attributes["content_encoding"] == "gzip"


def test_rate_limited_is_429_with_retry_after(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RateLimiter({"api_key": RateLimit(1, 3600), "ip": RateLimit(1000, 60)})
    monkeypatch.setattr(server.platform.abuse, "limiter", limiter)
    start = server.platform.ledger.size()
    assert _post(server, b"", "application/x-protobuf").status_code == 200
    response = _post(server, b"", "application/x-protobuf")
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    (limited,) = _new(server, start, "guard.rate_limited")
    assert limited.entry.attributes["kind"] == "api_key"
