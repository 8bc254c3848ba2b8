"""A provider for any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, Azure
OpenAI via a compatible proxy, vLLM, Ollama, llama.cpp server, LiteLLM).

Failures become :class:`~chatledger.rag.providers.ProviderError` with a stable ``reason``:

* ``connection``: the server could not be reached (retried), or dropped the connection;
* ``timeout``: connecting (retried) or waiting for the response took too long;
* ``http_status``: a non-2xx answer; 429 and 5xx are retried with exponential backoff,
  honouring ``Retry-After`` / ``retry-after-ms``, other statuses are not;
* ``malformed_response``: a 2xx answer that is not a chat completion.

Read timeouts are not retried: the server may be generating already, and a retry would
double both the cost and the visitor's wait. The API key never appears in a message, a
detail or a repr; response excerpts quoted in errors are scrubbed of it.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx
import orjson

from chatledger.rag.providers import (
    Completion,
    CompletionRequest,
    ProviderError,
    ProviderErrorReason,
    StreamDone,
    StreamEvent,
    TextDelta,
    UsageSource,
)
from chatledger.rag.sse import iter_sse_data
from chatledger.rag.tokens import estimate_chat_tokens, estimate_tokens

_EXCERPT_CHARS = 300


def _is_retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def retry_after_seconds(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """The server's requested wait: ``retry-after-ms`` (OpenAI), then ``Retry-After`` as
    seconds or an HTTP date. None when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    header = headers.get("retry-after")
    if not header:
        return None
    try:
        value = float(header)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _api_base(base_url: str) -> str:
    """``http://host:8000`` -> ``http://host:8000/v1``; a URL with a path is kept as given
    (``https://api.openai.com/v1``, ``http://proxy/openai/v1``)."""
    url = base_url.rstrip("/")
    if httpx.URL(url).path in ("", "/"):
        url += "/v1"
    return url


class OpenAICompatibleProvider:
    """Chat completions over HTTP with httpx. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_retry_after: float = 30.0,
        include_usage_in_stream: bool = True,
        headers: Mapping[str, str] | None = None,
        name: str = "openai_compatible",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.model = model
        self.endpoint = _api_base(base_url) + "/chat/completions"
        # For messages and repr: no userinfo or query string, where credentials may hide.
        shown = httpx.URL(self.endpoint).copy_with(userinfo=b"")
        self._shown_url = str(shown).split("?", 1)[0]
        self.max_retries = max(0, max_retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.include_usage_in_stream = include_usage_in_stream
        self._sleep = sleep
        self._api_key = api_key or ""
        all_headers = {"content-type": "application/json", **(headers or {})}
        if api_key:
            all_headers["authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            headers=all_headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return (
            f"OpenAICompatibleProvider(name={self.name!r}, url={self._shown_url!r},"
            f" model={self.model!r}, api_key={key})"
        )

    def __enter__(self) -> OpenAICompatibleProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # --- public API ---------------------------------------------------------------------

    def complete(self, request: CompletionRequest) -> Completion:
        started = time.perf_counter()
        model = request.model or self.model
        response = self._send(self._payload(request, model, stream=False))
        try:
            body = response.read()
        except httpx.TimeoutException as exc:
            self._fail("timeout", "timed out reading the response", cause=exc)
        except httpx.TransportError as exc:
            self._fail("connection", "connection lost reading the response", cause=exc)
        finally:
            response.close()
        data = self._json_object(body)
        try:
            choice = data["choices"][0]
            content = choice["message"].get("content") or ""
            if not isinstance(content, str):
                raise TypeError("content is not a string")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            self._fail("malformed_response", "response has no choices[0].message", cause=exc)
        finish = choice.get("finish_reason") if isinstance(choice, dict) else None
        reported_model = data.get("model")
        return self._completion(
            request,
            text=content,
            model=reported_model if isinstance(reported_model, str) else model,
            usage=data.get("usage"),
            finish_reason=finish if isinstance(finish, str) else "unknown",
            started=started,
        )

    def stream(self, request: CompletionRequest) -> Generator[StreamEvent, None, None]:
        started = time.perf_counter()
        model = request.model or self.model
        response = self._send(self._payload(request, model, stream=True))
        parts: list[str] = []
        finish: str | None = None
        usage: Any = None
        done = False
        try:
            for data in iter_sse_data(response.iter_lines()):
                if data.strip() == "[DONE]":
                    done = True
                    break
                event = self._json_object(data.encode("utf-8"))
                if "error" in event:
                    message = self._excerpt(str(event["error"]))
                    self._fail("malformed_response", f"stream reported an error: {message}")
                if isinstance(event.get("model"), str):
                    model = event["model"]
                if event.get("usage") is not None:
                    usage = event["usage"]
                for choice in event.get("choices") or ():
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    delta = choice.get("delta") or {}
                    piece = delta.get("content") if isinstance(delta, dict) else None
                    if isinstance(piece, str) and piece:
                        parts.append(piece)
                        yield TextDelta(piece)
                    if isinstance(choice.get("finish_reason"), str):
                        finish = choice["finish_reason"]
        except httpx.TimeoutException as exc:
            self._fail("timeout", "timed out waiting for the stream", cause=exc)
        except httpx.TransportError as exc:
            self._fail("connection", "connection lost during the stream", cause=exc)
        finally:
            response.close()
        if not done and finish is None:
            self._fail("malformed_response", "stream ended before the completion finished")
        yield StreamDone(
            self._completion(
                request,
                text="".join(parts),
                model=model,
                usage=usage,
                finish_reason=finish or "unknown",
                started=started,
            )
        )

    # --- internals ----------------------------------------------------------------------

    def _payload(self, request: CompletionRequest, model: str, *, stream: bool) -> bytes:
        payload: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": stream,
        }
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.max_tokens is not None:
            payload["max_tokens"] = request.max_tokens
        if request.stop:
            payload["stop"] = list(request.stop)
        if stream and self.include_usage_in_stream:
            payload["stream_options"] = {"include_usage": True}
        return orjson.dumps(payload)

    def _send(self, body: bytes) -> httpx.Response:
        """POST with retries; returns an open 2xx response that the caller must close."""
        attempt = 0
        while True:
            try:
                request = self._client.build_request("POST", self.endpoint, content=body)
                response = self._client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                reason: ProviderErrorReason = (
                    "timeout" if isinstance(exc, httpx.ConnectTimeout) else "connection"
                )
                if attempt >= self.max_retries:
                    self._fail(reason, "could not connect", cause=exc, attempts=attempt + 1)
                self._sleep(self._backoff(attempt))
                attempt += 1
                continue
            except httpx.TimeoutException as exc:
                self._fail("timeout", "timed out waiting for the response", cause=exc)
            except httpx.TransportError as exc:
                self._fail("connection", "connection failed", cause=exc, attempts=attempt + 1)
            if response.is_success:
                return response
            try:
                excerpt = self._excerpt(response.read().decode("utf-8", "replace"))
            except httpx.HTTPError:
                excerpt = ""
            finally:
                response.close()
            status = response.status_code
            wait = retry_after_seconds(response.headers)
            message = f"HTTP {status} from the model server" + (f": {excerpt}" if excerpt else "")
            if not _is_retryable_status(status) or attempt >= self.max_retries:
                self._fail("http_status", message, http_status=status, attempts=attempt + 1)
            if wait is not None and wait > self.max_retry_after:
                self._fail(
                    "http_status",
                    f"{message} (asked to retry after {wait:.0f}s, over the limit)",
                    http_status=status,
                    attempts=attempt + 1,
                    retry_after=wait,
                )
            self._sleep(max(self._backoff(attempt), wait or 0.0))
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        return float(min(self.backoff_max, self.backoff_base * 2**attempt))

    def _json_object(self, body: bytes) -> dict[str, Any]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            self._fail("malformed_response", "response is not JSON", cause=exc)
        if not isinstance(data, dict):
            self._fail("malformed_response", "response is not a JSON object")
        return data

    def _completion(
        self,
        request: CompletionRequest,
        *,
        text: str,
        model: str,
        usage: Any,
        finish_reason: str,
        started: float,
    ) -> Completion:
        source: UsageSource = "provider"
        try:
            input_tokens = int(usage["prompt_tokens"])
            output_tokens = int(usage["completion_tokens"])
        except (KeyError, TypeError, ValueError):
            source = "estimated"
            input_tokens = estimate_chat_tokens(m.content for m in request.messages)
            output_tokens = estimate_tokens(text)
        return Completion(
            text=text,
            provider=self.name,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            usage_source=source,
            finish_reason=finish_reason,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def _excerpt(self, text: str) -> str:
        text = " ".join(text.split())
        if self._api_key:
            text = text.replace(self._api_key, "[redacted]")
        return text[:_EXCERPT_CHARS]

    def _fail(
        self,
        reason: ProviderErrorReason,
        message: str,
        *,
        cause: BaseException | None = None,
        http_status: int | None = None,
        **details: Any,
    ) -> NoReturn:
        if cause is not None and not isinstance(cause, ProviderError):
            # httpx messages name the URL and the OS error, never headers; scrub anyway.
            message = f"{message} ({self._excerpt(type(cause).__name__ + ': ' + str(cause))})"
        error = ProviderError(
            f"{self.name}: {message}",
            reason=reason,
            provider=self.name,
            http_status=http_status,
            details={"model": self.model, "url": self._shown_url, **details},
        )
        raise error from cause
