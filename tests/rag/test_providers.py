"""OpenAICompatibleProvider against a real HTTP server on loopback (tests/rag/fake_openai.py)."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import httpx
import pytest

from chatledger.errors import ChatLedgerError
from chatledger.rag.offline import OfflineResponder
from chatledger.rag.openai_compat import OpenAICompatibleProvider, retry_after_seconds
from chatledger.rag.providers import (
    ChatMessage,
    CompletionRequest,
    Provider,
    ProviderError,
    StreamDone,
    TextDelta,
)
from chatledger.rag.tokens import estimate_chat_tokens, estimate_tokens

try:
    from .fake_openai import COMPLETION_TOKENS, MODEL, PROMPT_TOKENS, REPLY, FakeOpenAI
except ImportError:
    from fake_openai import (  # type: ignore[no-redef, import-not-found, unused-ignore]
        COMPLETION_TOKENS,
        MODEL,
        PROMPT_TOKENS,
        REPLY,
        FakeOpenAI,
    )

KEY = "sk-test-0123456789abcdef-SECRET"
REQUEST = CompletionRequest(
    messages=(
        ChatMessage("system", "Answer from the passages."),
        ChatMessage("user", "How long do refunds take?"),
    ),
    question="How long do refunds take?",
    temperature=0.2,
    max_tokens=200,
)


def provider(server: FakeOpenAI, mode: str = "ok", **kwargs: object) -> OpenAICompatibleProvider:
    options: dict[str, object] = {"api_key": KEY, "backoff_base": 0.01, "timeout": 5.0}
    options.update(kwargs)
    return OpenAICompatibleProvider(
        base_url=server.base_url(mode),
        model="configured-model",
        **options,  # type: ignore[arg-type]
    )


def assert_key_hidden(error: ProviderError, p: OpenAICompatibleProvider) -> None:
    for text in (str(error), repr(error), error.diagnostics(), str(error.to_dict()), repr(p)):
        assert KEY not in text


def test_complete_returns_text_usage_and_metadata(fake_openai: FakeOpenAI) -> None:
    with provider(fake_openai) as p:
        completion = p.complete(REQUEST)
    assert completion.text == REPLY
    assert completion.model == MODEL  # the model the server says answered, not our alias
    assert completion.provider == "openai_compatible"
    assert (completion.input_tokens, completion.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert completion.usage_source == "provider"
    assert completion.finish_reason == "stop"
    assert completion.latency_ms > 0
    (sent,) = fake_openai.requests
    assert sent.path == "/ok/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body == {
        "model": "configured-model",
        "messages": [
            {"role": "system", "content": "Answer from the passages."},
            {"role": "user", "content": "How long do refunds take?"},
        ],
        "stream": False,
        "temperature": 0.2,
        "max_tokens": 200,
    }


def test_stream_yields_deltas_then_the_completion(fake_openai: FakeOpenAI) -> None:
    with provider(fake_openai) as p:
        events = list(p.stream(REQUEST))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3
    assert "".join(deltas) == REPLY
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert done.completion.text == REPLY
    assert done.completion.usage_source == "provider"
    assert done.completion.input_tokens == PROMPT_TOKENS
    assert done.completion.finish_reason == "stop"
    (sent,) = fake_openai.requests
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}


def test_missing_usage_is_estimated(fake_openai: FakeOpenAI) -> None:
    with provider(fake_openai, "no-usage") as p:
        completion = p.complete(REQUEST)
        streamed = list(p.stream(REQUEST))[-1]
    expected_in = estimate_chat_tokens(m.content for m in REQUEST.messages)
    for c in (completion, streamed.completion):  # type: ignore[union-attr]
        assert c.usage_source == "estimated"
        assert c.input_tokens == expected_in
        assert c.output_tokens == estimate_tokens(REPLY)


def test_5xx_is_retried(fake_openai: FakeOpenAI) -> None:
    with provider(fake_openai, "fail-once") as p:
        assert p.complete(REQUEST).text == REPLY
    assert len(fake_openai.requests) == 2


def test_persistent_5xx_gives_up_after_the_retries(fake_openai: FakeOpenAI) -> None:
    with (
        provider(fake_openai, "always-500", max_retries=2) as p,
        pytest.raises(ProviderError) as info,
    ):
        p.complete(REQUEST)
    err = info.value
    assert (err.reason, err.http_status, err.details["attempts"]) == ("http_status", 500, 3)
    assert "HTTP 500" in err.message
    assert "internal error" in err.message
    assert isinstance(err, ChatLedgerError)
    assert err.code == "provider_error"
    assert len(fake_openai.requests) == 3


def test_backoff_grows_exponentially(fake_openai: FakeOpenAI) -> None:
    delays: list[float] = []
    with (
        provider(fake_openai, "always-500", max_retries=3, sleep=delays.append) as p,
        pytest.raises(ProviderError),
    ):
        p.complete(REQUEST)
    assert delays == [0.01, 0.02, 0.04]


def test_429_honours_retry_after(fake_openai: FakeOpenAI) -> None:
    with provider(fake_openai, "rate-limited") as p:
        assert p.complete(REQUEST).text == REPLY
    first, second = fake_openai.requests
    assert second.at - first.at >= 0.95  # Retry-After: 1, not the 10 ms backoff


def test_retry_after_beyond_the_limit_fails_at_once(fake_openai: FakeOpenAI) -> None:
    started = time.monotonic()
    with (
        provider(fake_openai, "retry-after-huge", max_retry_after=30) as p,
        pytest.raises(ProviderError) as info,
    ):
        p.complete(REQUEST)
    assert time.monotonic() - started < 2
    assert info.value.http_status == 429
    assert info.value.details["retry_after"] == 3600
    assert len(fake_openai.requests) == 1


def test_client_errors_are_not_retried_and_never_show_the_key(fake_openai: FakeOpenAI) -> None:
    with provider(fake_openai, "unauthorized") as p:
        with pytest.raises(ProviderError) as info:
            p.complete(REQUEST)
        assert_key_hidden(info.value, p)
    assert info.value.http_status == 401
    assert "[redacted]" in info.value.message  # the server echoed it; we scrubbed it
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize("mode", ["malformed", "no-choices"])
def test_malformed_responses(fake_openai: FakeOpenAI, mode: str) -> None:
    with provider(fake_openai, mode) as p:
        with pytest.raises(ProviderError) as complete_info:
            p.complete(REQUEST)
        with pytest.raises(ProviderError) as stream_info:
            list(p.stream(REQUEST))
    assert complete_info.value.reason == "malformed_response"
    assert stream_info.value.reason == "malformed_response"


def test_a_hanging_server_times_out_without_retry(fake_openai: FakeOpenAI) -> None:
    started = time.monotonic()
    with provider(fake_openai, "hang", timeout=0.3) as p:
        with pytest.raises(ProviderError) as info:
            p.complete(REQUEST)
        assert_key_hidden(info.value, p)
    assert info.value.reason == "timeout"
    assert info.value.status == 504
    assert time.monotonic() - started < 2
    assert len(fake_openai.requests) == 1


def test_a_hanging_stream_times_out(fake_openai: FakeOpenAI) -> None:
    with provider(fake_openai, "hang", timeout=0.3) as p, pytest.raises(ProviderError) as info:
        list(p.stream(REQUEST))
    assert info.value.reason == "timeout"


def test_unreachable_server_is_a_connection_error_after_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    delays: list[float] = []
    with OpenAICompatibleProvider(
        base_url=f"http://127.0.0.1:{port}", model="m", api_key=KEY, sleep=delays.append
    ) as p:
        with pytest.raises(ProviderError) as info:
            p.complete(REQUEST)
        assert_key_hidden(info.value, p)
    assert info.value.reason == "connection"
    assert info.value.details["attempts"] == 3
    assert delays == [0.5, 1.0]


def test_a_cut_stream_is_a_connection_error(fake_openai: FakeOpenAI) -> None:
    received: list[str] = []
    with provider(fake_openai, "stream-cut") as p, pytest.raises(ProviderError) as info:
        received.extend(e.text for e in p.stream(REQUEST) if isinstance(e, TextDelta))
    assert info.value.reason == "connection"
    assert received  # what arrived before the cut was delivered


def test_an_error_event_in_the_stream(fake_openai: FakeOpenAI) -> None:
    with (
        provider(fake_openai, "stream-error") as p,
        pytest.raises(ProviderError, match="model overloaded") as info,
    ):
        list(p.stream(REQUEST))
    assert info.value.reason == "malformed_response"


def test_abandoning_a_stream_releases_the_connection(fake_openai: FakeOpenAI) -> None:
    with provider(fake_openai) as p:
        events = p.stream(REQUEST)
        assert isinstance(next(events), TextDelta)
        events.close()  # a visitor who disconnects: no ResourceWarning, client still usable
        assert p.complete(REQUEST).text == REPLY


def test_no_key_sends_no_authorization(fake_openai: FakeOpenAI) -> None:
    with OpenAICompatibleProvider(base_url=fake_openai.base_url(), model="m") as p:
        p.complete(REQUEST)
        assert "api_key=none" in repr(p)
    assert "authorization" not in fake_openai.requests[0].headers


def test_request_model_overrides_the_configured_one(fake_openai: FakeOpenAI) -> None:
    request = CompletionRequest(messages=REQUEST.messages, model="other-model")
    with provider(fake_openai) as p:
        p.complete(request)
    assert fake_openai.requests[0].body["model"] == "other-model"


@pytest.mark.parametrize(
    ("base_url", "endpoint"),
    [
        ("http://h:8000", "http://h:8000/v1/chat/completions"),
        ("http://h:8000/", "http://h:8000/v1/chat/completions"),
        ("https://api.example.com/v1/", "https://api.example.com/v1/chat/completions"),
        ("http://proxy/openai/v1", "http://proxy/openai/v1/chat/completions"),
    ],
)
def test_endpoint_from_base_url(base_url: str, endpoint: str) -> None:
    with OpenAICompatibleProvider(base_url=base_url, model="m") as p:
        assert p.endpoint == endpoint


def test_credentials_in_the_url_are_not_shown() -> None:
    with OpenAICompatibleProvider(base_url="http://u:pw@h/v1?key=abc", model="m") as p:
        assert "pw" not in repr(p)
        assert "abc" not in repr(p)


def test_retry_after_parsing() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(httpx.Headers({"retry-after": "7"})) == 7
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    date = httpx.Headers({"retry-after": "Mon, 01 Jan 2024 12:00:30 GMT"})
    assert retry_after_seconds(date, now=now) == 30
    assert retry_after_seconds(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after_seconds(httpx.Headers({"retry-after": "-3"})) is None
    assert retry_after_seconds(httpx.Headers({})) is None


def test_both_providers_satisfy_the_protocol() -> None:
    with OpenAICompatibleProvider(base_url="http://h", model="m") as p:
        assert isinstance(p, Provider)
    assert isinstance(OfflineResponder(), Provider)
