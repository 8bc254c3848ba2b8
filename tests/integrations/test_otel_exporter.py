"""The real opentelemetry-sdk, with its OTLP/HTTP span exporter, sending GenAI spans to a
running server; the ledger events it produces are checked field by field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from chatledger.client import ledger_conversation_id, ledger_item_id
from chatledger.ledger.service import Record
from tests.integrations.server import Server


def _messages(*pairs: tuple[str, str]) -> str:
    return json.dumps([{"role": r, "parts": [{"type": "text", "content": t}]} for r, t in pairs])


def _output(text: str, reason: str = "stop") -> str:
    return json.dumps(
        [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": text}],
                "finish_reason": reason,
            }
        ]
    )


@pytest.fixture
def provider(server: Server) -> Iterator[TracerProvider]:
    exporter = OTLPSpanExporter(
        endpoint=f"{server.url}/v1/traces",
        headers={"authorization": f"Bearer {server.ingest_key}"},
        timeout=10,
    )
    tracer_provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "support-bot", "chatledger.chatbot.id": server.chatbot_id}
        )
    )
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    yield tracer_provider
    tracer_provider.shutdown()


def _by_action(records: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for record in records:
        out.setdefault(record.entry.action, []).append(record)
    return out


def test_genai_spans_become_native_events(server: Server, provider: TracerProvider) -> None:
    start = server.platform.ledger.size()
    tracer = provider.get_tracer("app.rag", "1.2.3")
    with tracer.start_as_current_span("invoke_agent support") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_agent")
        with tracer.start_as_current_span("retrieval kb-main") as span:
            span.set_attribute("gen_ai.operation.name", "retrieval")
            span.set_attribute("gen_ai.conversation.id", "support-42")
            span.set_attribute("gen_ai.data_source.id", "kb-main")
            span.set_attribute("gen_ai.retrieval.query.text", "How long do refunds take?")
            span.set_attribute("gen_ai.retrieval.top_k", 2)
            span.set_attribute(
                "gen_ai.retrieval.documents",
                json.dumps(
                    [
                        {"id": "refunds.pdf#3", "score": 0.91, "content": "Refunds take 14 days."},
                        {"id": "faq.md#1", "score": 0.42, "content": "Contact support."},
                    ]
                ),
            )
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.provider.name", "openai")
            span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            span.set_attribute("gen_ai.request.temperature", 0.2)
            span.set_attribute("gen_ai.response.model", "gpt-4o-mini-2024-07-18")
            span.set_attribute("gen_ai.response.id", "chatcmpl-77")
            span.set_attribute("gen_ai.usage.input_tokens", 812)
            span.set_attribute("gen_ai.usage.output_tokens", 31)
            span.set_attribute("gen_ai.conversation.id", "support-42")
            span.set_attribute("user.id", "alice")
            span.set_attribute("app.tenant", "acme")
            span.set_attribute(
                "gen_ai.input.messages",
                _messages(
                    ("system", "Answer from the docs."), ("user", "How long do refunds take?")
                ),
            )
            span.set_attribute("gen_ai.output.messages", _output("Within 14 days [1]."))
    assert provider.force_flush(10_000)

    # Acknowledged means durable: the events are there as soon as the export returned.
    records = server.records(start)
    events = _by_action(records)
    bot = server.chatbot_id
    conv = ledger_conversation_id(bot, "support-42")

    (started,) = events["conversation.start"]
    assert started.entry.entity == {"type": "conversation", "id": conv}
    assert started.entry.actor["type"] == "api_key"
    assert started.entry.actor["role"] == "agent"
    a = started.entry.attributes
    assert a["chatbot_id"] == bot
    assert a["conversation_id"] == conv
    assert a["gen_ai.conversation.id"] == "support-42"
    assert a["channel"] == "otlp"
    assert a["config_version"] == 1
    assert a["ingest.source"] == "otlp"

    (retrieval,) = events["message.retrieval"]
    a = retrieval.entry.attributes
    assert a["chatbot_id"] == bot and a["conversation_id"] == conv
    assert a["gen_ai.operation.name"] == "retrieval"
    assert a["gen_ai.data_source.id"] == "kb-main"
    assert a["gen_ai.retrieval.top_k"] == 2
    assert a["count"] == 2
    assert a["retrieved"][0]["chunk_id"] == "refunds.pdf#3"
    assert a["retrieved"][0]["score"] == 0.91
    assert a["retrieved"][0]["rank"] == 1
    assert len(a["retrieved"][0]["chunk_sha256"]) == 64
    assert a["retrieved"][1]["chunk_id"] == "faq.md#1"
    assert a["otel.span.name"] == "retrieval kb-main"
    assert a["service.name"] == "support-bot"
    assert retrieval.payload is not None
    assert retrieval.payload["query"] == "How long do refunds take?"
    assert [c["text"] for c in retrieval.payload["chunks"]] == [
        "Refunds take 14 days.",
        "Contact support.",
    ]

    (user,) = events["message.user"]
    assert user.payload is not None and user.payload["text"] == "How long do refunds take?"
    assert user.entry.attributes["length"] == len("How long do refunds take?")
    assert user.entry.entity["type"] == "message"
    user_id = user.entry.attributes["message_id"]
    assert user_id.startswith("msg_")

    (call,) = events["model.call"]
    a = call.entry.attributes
    assert call.entry.outcome == "success"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert a["gen_ai.response.id"] == "chatcmpl-77"
    assert a["gen_ai.usage.input_tokens"] == 812
    assert a["gen_ai.usage.output_tokens"] == 31
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.conversation.id"] == "support-42"
    assert a["latency_ms"] >= 0
    assert call.payload is not None
    assert call.payload["request"] == {"temperature": 0.2}
    assert call.payload["messages"][0]["role"] == "system"
    assert call.payload["otel_attributes"] == {"app.tenant": "acme"}  # unmapped: kept

    (answer,) = events["message.answer"]
    a = answer.entry.attributes
    assert answer.payload == {"text": "Within 14 days [1]."}
    assert a["message_id"].startswith("ans_")
    assert a["message_id"] == call.entry.attributes["message_id"]
    assert a["in_reply_to"] == user_id
    assert a["gen_ai.usage.output_tokens"] == 31
    assert a["config_version"] == 1

    # the conversation's data subject is the span's user.id, scoped to the workspace
    subject = server.platform.ledger.subject_ref(f"ext:{server.workspace_id}:alice")
    for record in (started, user, call, answer, retrieval):
        assert record.entry.subject == subject

    (raw,) = events["integration.span"]  # the agent span: not mapped, kept whole
    assert raw.entry.attributes["reason"] == "unmapped"
    assert raw.entry.attributes["otel.span.name"] == "invoke_agent support"
    assert raw.payload is not None
    assert raw.payload["attributes"] == {"gen_ai.operation.name": "invoke_agent"}
    assert raw.payload["resource"]["service.name"] == "support-bot"
    trace_ids = {
        r.entry.attributes["otel.trace_id"] for r in records if r.entry.action != "auth.token_use"
    }
    assert len(trace_ids) == 1

    # the conversation replays like a native one
    replay = server.platform.chat
    conversation = replay.find(conv)
    assert conversation is not None and conversation.chatbot_id == bot
    assert conversation.subject == f"ext:{server.workspace_id}:alice"


def test_next_turn_records_only_the_new_message(server: Server, provider: TracerProvider) -> None:
    tracer = provider.get_tracer("app")
    history = [("system", "Be brief."), ("user", "Hi")]
    for turn, (question, reply) in enumerate([("Hi", "Hello!"), ("Refunds?", "14 days.")]):
        if turn:
            history += [("assistant", "Hello!"), ("user", question)]
        start = server.platform.ledger.size()
        with tracer.start_as_current_span("chat") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.provider.name", "openai")
            span.set_attribute("gen_ai.request.model", "gpt-4o")
            span.set_attribute("gen_ai.conversation.id", "turns-1")
            span.set_attribute("gen_ai.input.messages", _messages(*history))
            span.set_attribute("gen_ai.output.messages", _output(reply))
        assert provider.force_flush(10_000)
        users = [r for r in server.records(start) if r.entry.action == "message.user"]
        assert [u.payload["text"] for u in users if u.payload] == [question]


def test_older_conventions_openinference_and_failures(server: Server) -> None:
    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "li-app"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = tracer_provider.get_tracer("openinference.instrumentation.llama_index")
    with tracer.start_as_current_span("retrieve") as span:
        span.set_attribute("openinference.span.kind", "RETRIEVER")
        span.set_attribute("session.id", "li-session")
        span.set_attribute("input.value", "what is our SLA?")
        for i, (doc, score, text) in enumerate(
            [("sla.pdf_0", 0.8, "99.9% uptime"), ("sla.pdf_1", 0.5, "credits")]
        ):
            span.set_attribute(f"retrieval.documents.{i}.document.id", doc)
            span.set_attribute(f"retrieval.documents.{i}.document.score", score)
            span.set_attribute(f"retrieval.documents.{i}.document.content", text)
            span.set_attribute(
                f"retrieval.documents.{i}.document.metadata",
                json.dumps({"file_name": "sla.pdf", "document_id": "sla"}),
            )
    with tracer.start_as_current_span("llm") as span:
        span.set_attribute("openinference.span.kind", "LLM")
        span.set_attribute("session.id", "li-session")
        span.set_attribute("gen_ai.system", "anthropic")  # the older name of the provider
        span.set_attribute("llm.model_name", "claude-3-5-haiku")
        span.set_attribute("llm.token_count.prompt", 120)
        span.set_attribute("llm.token_count.completion", 9)
        span.set_attribute("llm.input_messages.0.message.role", "user")
        span.set_attribute("llm.input_messages.0.message.content", "what is our SLA?")
        span.set_attribute("llm.output_messages.0.message.role", "assistant")
        span.set_attribute("llm.output_messages.0.message.content", "99.9%.")
    with tracer.start_as_current_span("chat failing") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "openai")
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        span.set_attribute("gen_ai.conversation.id", "li-session")
        span.set_attribute("error.type", "RateLimitError")
        span.set_status(Status(StatusCode.ERROR, "429 from upstream"))
    tracer_provider.shutdown()
    spans: list[ReadableSpan] = list(memory.get_finished_spans())
    # the chatbot named by header this time, and the payload gzipped
    exporter = OTLPSpanExporter(
        endpoint=f"{server.url}/v1/traces",
        headers={"x-api-key": server.ingest_key, "x-chatledger-chatbot-id": server.chatbot_id},
        compression=Compression.Gzip,
        timeout=10,
    )
    start = server.platform.ledger.size()
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        events = _by_action(server.records(start))
        conv = ledger_conversation_id(server.chatbot_id, "li-session")
        (retrieval,) = events["message.retrieval"]
        a = retrieval.entry.attributes
        assert a["conversation_id"] == conv
        assert [
            (c["chunk_id"], c["document_id"], c["score"], c["source"]) for c in a["retrieved"]
        ] == [
            ("sla.pdf_0", "sla", 0.8, "sla.pdf"),
            ("sla.pdf_1", "sla", 0.5, "sla.pdf"),
        ]
        assert retrieval.payload is not None and retrieval.payload["query"] == "what is our SLA?"
        calls = events["model.call"]
        ok = next(c for c in calls if c.entry.outcome == "success")
        assert ok.entry.attributes["gen_ai.provider.name"] == "anthropic"
        assert ok.entry.attributes["gen_ai.request.model"] == "claude-3-5-haiku"
        assert ok.entry.attributes["gen_ai.usage.input_tokens"] == 120
        assert ok.entry.attributes["gen_ai.usage.output_tokens"] == 9
        failed = next(c for c in calls if c.entry.outcome == "failure")
        assert failed.entry.attributes["error.type"] == "RateLimitError"
        assert failed.payload is not None and failed.payload["error"] == "429 from upstream"
        (answer,) = events["message.answer"]
        assert answer.payload == {"text": "99.9%."}
        (user,) = events["message.user"]
        assert answer.entry.attributes["in_reply_to"] == user.entry.attributes["message_id"]
        assert user.entry.attributes["message_id"] == ledger_item_id(
            "msg", conv, user.entry.attributes["external_message_id"]
        )

        # exported again (a retry after a lost answer): stored once
        size = server.platform.ledger.size()
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        assert [
            r.entry.action for r in server.records(size) if r.entry.action != "auth.token_use"
        ] == []
    finally:
        exporter.shutdown()


def test_spans_without_a_known_chatbot_are_kept_raw(server: Server) -> None:
    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "other"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    with tracer_provider.get_tracer("x").start_as_current_span("chat") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        span.set_attribute("gen_ai.input.messages", _messages(("user", "secret question")))
    with tracer_provider.get_tracer("x").start_as_current_span("chat elsewhere") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("chatledger.chatbot.id", "bot_of_someone_else")
    tracer_provider.shutdown()
    exporter = OTLPSpanExporter(
        endpoint=f"{server.url}/v1/traces",
        headers={"authorization": f"Bearer {server.ingest_key}"},
        timeout=10,
    )
    start = server.platform.ledger.size()
    try:
        assert exporter.export(list(memory.get_finished_spans())) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    raws = [r for r in server.records(start) if r.entry.action == "integration.span"]
    assert [r.entry.attributes["reason"] for r in raws] == ["no_chatbot", "unknown_chatbot"]
    assert raws[1].entry.attributes["reported_chatbot_id"] == "bot_of_someone_else"
    assert "chatbot_id" not in raws[1].entry.attributes
    first: Any = raws[0].payload
    assert json.loads(first["attributes"]["gen_ai.input.messages"])[0]["parts"][0]["content"] == (
        "secret question"
    )
