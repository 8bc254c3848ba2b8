"""``chatledger.client.openai.instrument``: the real ``openai`` package against a small real
OpenAI-compatible server on loopback (tests/rag/fake_openai.py), recorded into a running
ChatLedger server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from chatledger.client import LedgerClient, ledger_conversation_id
from chatledger.client.openai import instrument
from chatledger.ledger.service import Record
from tests.integrations.server import Server
from tests.rag.fake_openai import COMPLETION_TOKENS, MODEL, PROMPT_TOKENS, REPLY, FakeOpenAI

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.close()


@pytest.fixture
def ledger(server: Server) -> Iterator[LedgerClient]:
    client = LedgerClient(server.url, server.ingest_key, flush_interval=0.02)
    yield client
    client.close()


def _conversation(server: Server, external: str) -> list[Record]:
    cid = ledger_conversation_id(server.chatbot_id, external)
    return [r for r in server.records() if r.entry.attributes.get("conversation_id") == cid]


def test_one_line_records_every_chat_completion(
    server: Server, fake: FakeOpenAI, ledger: LedgerClient
) -> None:
    client = openai.OpenAI(base_url=fake.base_url("ok"), api_key="sk-test", max_retries=0)
    try:
        instrument(client, ledger, chatbot_id=server.chatbot_id, conversation_id="oa-1")
        history = [
            {"role": "system", "content": "You answer from the docs."},
            {"role": "user", "content": "How long do refunds take?"},
        ]
        first = client.chat.completions.create(
            model="gpt-4o-mini", messages=history, temperature=0.1
        )
        assert first.choices[0].message.content == REPLY  # the caller gets the real response
        history += [
            {"role": "assistant", "content": REPLY},
            {"role": "user", "content": [{"type": "text", "text": "And for digital goods?"}]},
        ]
        client.chat.completions.create(model="gpt-4o-mini", messages=history)
        ledger.flush(timeout=30)
    finally:
        client.close()
    records = _conversation(server, "oa-1")
    actions = [r.entry.action for r in records]
    assert actions == [
        "conversation.start",
        "message.user",
        "model.call",
        "message.answer",
        "message.user",
        "model.call",
        "message.answer",
    ]
    users = [r for r in records if r.entry.action == "message.user"]
    assert [u.payload["text"] for u in users if u.payload] == [
        "How long do refunds take?",
        "And for digital goods?",
    ]
    calls = [r for r in records if r.entry.action == "model.call"]
    a = calls[0].entry.attributes
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == MODEL
    assert a["gen_ai.usage.input_tokens"] == PROMPT_TOKENS
    assert a["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.response.id"] == "chatcmpl-1"
    assert a["latency_ms"] > 0
    assert calls[0].payload is not None
    assert calls[0].payload["messages"][1] == {
        "role": "user",
        "content": "How long do refunds take?",
    }
    assert calls[0].payload["request"] == {"temperature": 0.1}
    answers = [r for r in records if r.entry.action == "message.answer"]
    assert [x.payload for x in answers] == [{"text": REPLY}, {"text": REPLY}]
    for user, call, answer in zip(users, calls, answers, strict=True):
        assert answer.entry.attributes["in_reply_to"] == user.entry.attributes["message_id"]
        assert call.entry.attributes["message_id"] == answer.entry.attributes["message_id"]


def test_streams_failures_and_per_call_conversations(
    server: Server, fake: FakeOpenAI, ledger: LedgerClient
) -> None:
    client = openai.OpenAI(base_url=fake.base_url("ok"), api_key="sk-test", max_retries=0)
    broken = openai.OpenAI(base_url=fake.base_url("always-500"), api_key="sk-test", max_retries=0)
    try:
        instrument(
            client, ledger, chatbot_id=server.chatbot_id, conversation_id=lambda: "oa-stream"
        )
        instrument(broken, ledger, chatbot_id=server.chatbot_id, conversation_id="oa-broken")
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Stream it"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == REPLY
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "elsewhere"}],
            chatledger_conversation_id="oa-other",
        )
        with pytest.raises(openai.InternalServerError):
            broken.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
        ledger.flush(timeout=30)
        client._chatledger.uninstrument()
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "not recorded"}]
        )
        ledger.flush(timeout=30)
    finally:
        client.close()
        broken.close()
    streamed = _conversation(server, "oa-stream")
    answer = next(r for r in streamed if r.entry.action == "message.answer")
    assert answer.payload == {"text": REPLY}
    call = next(r for r in streamed if r.entry.action == "model.call")
    assert call.entry.attributes["gen_ai.usage.input_tokens"] == PROMPT_TOKENS
    assert call.entry.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert call.payload is not None and call.payload["request"] == {"stream": True}
    assert [r.entry.action for r in _conversation(server, "oa-other")][1:] == [
        "message.user",
        "model.call",
        "message.answer",
    ]
    failed = [r for r in _conversation(server, "oa-broken") if r.entry.action == "model.call"]
    assert [f.entry.outcome for f in failed] == ["failure"]
    assert failed[0].entry.attributes["error.type"] == "InternalServerError"
    texts = [r.payload.get("text") for r in server.records() if r.payload and "text" in r.payload]
    assert "not recorded" not in texts


def test_async_client(server: Server, fake: FakeOpenAI, ledger: LedgerClient) -> None:
    async def run() -> str:
        client = openai.AsyncOpenAI(base_url=fake.base_url("ok"), api_key="sk-test", max_retries=0)
        try:
            instrument(client, ledger, chatbot_id=server.chatbot_id, conversation_id="oa-async")
            reply = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "async?"}]
            )
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "async stream?"}],
                stream=True,
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            assert "".join(parts) == REPLY
            return str(reply.choices[0].message.content)
        finally:
            await client.close()

    assert asyncio.run(run()) == REPLY
    ledger.flush(timeout=30)
    records = _conversation(server, "oa-async")
    answers = [r.payload for r in records if r.entry.action == "message.answer"]
    assert answers == [{"text": REPLY}, {"text": REPLY}]
    users = [r.payload["text"] for r in records if r.entry.action == "message.user" and r.payload]
    assert users == ["async?", "async stream?"]
