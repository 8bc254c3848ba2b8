"""A chatbot on an OpenAI-compatible model server (a real one on loopback): provider usage
is recorded, failures and timeouts give the visitor a clear message and are recorded as failed
responses, and nothing is lost."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.server import LiveServer
from tests.rag.fake_openai import COMPLETION_TOKENS, MODEL, PROMPT_TOKENS, REPLY, FakeOpenAI


@pytest.fixture
def model_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.close()


def make_bot(api: httpx.Client, fake: FakeOpenAI, mode: str, **model: object) -> tuple[str, str]:
    settings = {
        "provider": "openai",
        "model": "gpt-test",
        "base_url": fake.base_url(mode),
        "api_key": "sk-test-secret-key-1234567890",
        "max_retries": 1,
        **model,
    }
    bot = api.post(
        "/chatbots",
        json={"name": f"remote {mode}", "model": settings, "retrieval": {"min_score": 0.0}},
    )
    assert bot.status_code == 201, bot.text
    bot_id = bot.json()["id"]
    api.post(
        f"/chatbots/{bot_id}/documents",
        files={"file": ("refunds.txt", b"Refunds are issued within 14 days of the return.")},
    )
    conv = api.post(f"/chatbots/{bot_id}/conversations", json={}).json()["id"]
    return bot_id, conv


def test_provider_usage_is_recorded(
    server: LiveServer, api: httpx.Client, model_server: FakeOpenAI
) -> None:
    bot_id, conv = make_bot(api, model_server, "ok")
    turn = api.post(f"/conversations/{conv}/messages", json={"text": "How long do refunds take?"})
    assert turn.status_code == 200, turn.text
    answer = turn.json()["answer"]
    assert answer["text"] == REPLY
    assert answer["model"] == MODEL
    assert answer["usage"] == {
        "input_tokens": PROMPT_TOKENS,
        "output_tokens": COMPLETION_TOKENS,
        "source": "provider",
    }
    record = server.platform.ledger.read(turn.json()["seq"])
    attrs = record.entry.attributes
    assert attrs["gen_ai.provider.name"] == "openai_compatible"
    assert attrs["gen_ai.request.model"] == "gpt-test"
    assert attrs["gen_ai.response.model"] == MODEL
    assert attrs["usage_source"] == "provider"
    assert attrs["retrieved"], attrs
    assert attrs["cited"]  # the fake cites [1]
    sent = model_server.requests[-1].body
    assert sent["messages"][0]["role"] == "system" and sent["model"] == "gpt-test"
    # the provider key is a secret: never in the ledger, never in API output
    ledger = server.platform.ledger
    everything = b"".join(e.body for e in ledger.entries(0, ledger.size()))
    assert b"sk-test-secret" not in everything
    shown = api.get(f"/chatbots/{bot_id}")
    assert shown.status_code == 200
    assert shown.json()["model"]["api_key"] == "[set]"
    assert "sk-test-secret" not in shown.text


def test_usage_is_estimated_when_the_provider_reports_none(
    api: httpx.Client, model_server: FakeOpenAI
) -> None:
    _, conv = make_bot(api, model_server, "no-usage")
    answer = api.post(f"/conversations/{conv}/messages", json={"text": "Refunds?"}).json()["answer"]
    assert answer["usage"]["source"] == "estimated" and answer["usage"]["input_tokens"] > 0


@pytest.mark.parametrize(
    ("mode", "status", "reason"),
    [
        ("always-500", 502, "http_status"),
        ("malformed", 502, "malformed_response"),
        ("hang", 504, "timeout"),
    ],
)
def test_failures_are_recorded_and_nothing_is_lost(
    server: LiveServer,
    api: httpx.Client,
    model_server: FakeOpenAI,
    mode: str,
    status: int,
    reason: str,
) -> None:
    _, conv = make_bot(api, model_server, mode, timeout_seconds=1.0, max_retries=0)
    response = api.post(f"/conversations/{conv}/messages", json={"text": "Refunds, please?"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == "provider_error"
    assert error["details"]["reason"] == reason
    ledger = server.platform.ledger
    entries = list(ledger.entries(0, ledger.size()))
    user = [
        e for e in entries if e.action == "message.user" and e.attributes["conversation_id"] == conv
    ]
    failed = [e for e in entries if e.action == "message.answer_failed"]
    assert len(user) == 1 and ledger.read(user[0].seq).payload == {
        "text": "Refunds, please?",
        "attachments": [],
    }
    assert len(failed) == 1 and failed[0].attributes["reason"] == reason
    assert failed[0].outcome == "failure"
    assert ledger.verify().ok


def test_retry_after_a_server_error(api: httpx.Client, model_server: FakeOpenAI) -> None:
    _, conv = make_bot(api, model_server, "fail-once", max_retries=2)
    response = api.post(f"/conversations/{conv}/messages", json={"text": "Refunds?"})
    assert response.status_code == 200, response.text
    assert response.json()["answer"]["text"] == REPLY
