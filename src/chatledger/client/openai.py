"""One line to record every chat completion of an OpenAI Python client (sync or async,
streaming or not; any OpenAI-compatible server)::

    from openai import OpenAI
    from chatledger.client import LedgerClient
    from chatledger.client.openai import instrument

    ledger = LedgerClient(url, key, spool_dir="./ledger-spool")
    client = instrument(OpenAI(), ledger, chatbot_id="bot_123", conversation_id=current_session)

Each ``client.chat.completions.create(...)`` call then records, without waiting on the
network: the newest user message of ``messages`` (``message.user``; keyed by its content and
position, so the history re-sent with every turn is recorded once), the call
(``model.call``: provider, requested and answering model, token usage, latency, finish
reason, the prompt) and the answer (``message.answer``). A failed call is recorded as a
failed ``model.call`` and the exception re-raised. Pass ``chatledger_conversation_id=...``
to one call to record it into another conversation.

The ``openai`` package is not imported here: any object with the same
``chat.completions.create`` shape works.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

from chatledger.client.core import LedgerClient, Pending

log = logging.getLogger("chatledger.client.openai")

CONVERSATION_KWARG = "chatledger_conversation_id"
_REQUEST_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "n",
    "stop",
    "response_format",
)

ConversationId = str | Callable[[], str] | None


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            str(_get(part, "text") or "") for part in content if _get(part, "type") == "text"
        )
    return ""


def _plain(message: Any) -> dict[str, Any]:
    """A prompt message as plain JSON (role, text content, name, tool call ids)."""
    out: dict[str, Any] = {"role": str(_get(message, "role") or "")}
    content = _get(message, "content")
    out["content"] = content if isinstance(content, str) else _text(content)
    for extra in ("name", "tool_call_id"):
        value = _get(message, extra)
        if isinstance(value, str):
            out[extra] = value
    return out


class Instrumentation:
    """What :func:`instrument` installed; ``uninstrument()`` puts the original back."""

    def __init__(
        self,
        openai_client: Any,
        ledger: LedgerClient,
        chatbot_id: str,
        conversation_id: ConversationId,
        *,
        provider: str,
        record_prompt: bool,
        strict: bool,
    ) -> None:
        self.openai_client = openai_client
        self.ledger = ledger
        self.chatbot_id = chatbot_id
        self._conversation = conversation_id
        self._default_conversation = f"openai-{uuid.uuid4().hex}"
        self.provider = provider
        self.record_prompt = record_prompt
        self.strict = strict
        self._completions = openai_client.chat.completions
        self._original = self._completions.create

    # -- installing -----------------------------------------------------------------------

    def install(self) -> None:
        original = self._original

        def create(*args: Any, **kwargs: Any) -> Any:
            conversation, user = self._before(kwargs)
            started = time.perf_counter()
            try:
                result = original(*args, **kwargs)
            except Exception as exc:
                self._failed(conversation, kwargs, exc, started)
                raise
            if inspect.isawaitable(result):  # AsyncOpenAI
                return self._later(result, conversation, user, kwargs, started)
            if kwargs.get("stream"):
                return _Stream(result, self._finisher(conversation, user, kwargs, started))
            self._completed(conversation, user, kwargs, result, started)
            return result

        self._completions.create = create

    async def _later(
        self,
        pending: Awaitable[Any],
        conversation: str,
        user: Pending | None,
        kwargs: dict[str, Any],
        started: float,
    ) -> Any:
        try:
            result = await pending
        except Exception as exc:
            self._failed(conversation, kwargs, exc, started)
            raise
        if kwargs.get("stream"):
            return _AsyncStream(result, self._finisher(conversation, user, kwargs, started))
        self._completed(conversation, user, kwargs, result, started)
        return result

    def uninstrument(self) -> None:
        if "create" in vars(self._completions):
            del self._completions.create

    # -- recording ------------------------------------------------------------------------

    def _guard(self, action: Callable[[], Any]) -> Any:
        if self.strict:
            return action()
        try:
            return action()
        except Exception:
            log.exception("chatledger: could not record a chat completion")
            return None

    def _conversation_id(self, kwargs: dict[str, Any]) -> str:
        chosen = kwargs.pop(CONVERSATION_KWARG, None)
        if chosen:
            return str(chosen)
        if callable(self._conversation):
            return str(self._conversation())
        return self._conversation or self._default_conversation

    def _before(self, kwargs: dict[str, Any]) -> tuple[str, Pending | None]:
        conversation = self._conversation_id(kwargs)
        messages = list(kwargs.get("messages") or [])
        if not messages or _get(messages[-1], "role") != "user":
            return conversation, None
        index = len(messages) - 1
        text = _text(_get(messages[-1], "content"))
        digest = hashlib.sha256(
            "\x00".join((self.chatbot_id, conversation, str(index), text)).encode()
        ).hexdigest()
        pending: Pending | None = self._guard(
            lambda: self.ledger.user_message(
                self.chatbot_id,
                conversation,
                text,
                message_id=f"oa-msg-{digest[:24]}",
                key=f"oa-user-{digest[:40]}",
            )
        )
        return conversation, pending

    def _request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = {}
        for name in _REQUEST_PARAMS:
            value = kwargs.get(name)
            if isinstance(value, str | int | float | bool) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                params[name] = value
        if kwargs.get("stream"):
            params["stream"] = True
        return params

    def _prompt(self, kwargs: dict[str, Any]) -> list[dict[str, Any]] | None:
        if not self.record_prompt:
            return None
        return [_plain(m) for m in kwargs.get("messages") or []]

    def _record(
        self,
        conversation: str,
        user: Pending | None,
        kwargs: dict[str, Any],
        *,
        text: str,
        model: str | None,
        finish_reason: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        response_id: str | None,
        latency_ms: float,
    ) -> None:
        answer_id = f"oa-ans-{uuid.uuid4().hex}"
        requested = kwargs.get("model")
        requested = requested if isinstance(requested, str) else None

        def record() -> None:
            self.ledger.model_call(
                self.chatbot_id,
                conversation,
                provider=self.provider,
                request_model=requested,
                response_model=model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                latency_ms=latency_ms,
                finish_reason=finish_reason,
                messages=self._prompt(kwargs),
                output=[{"role": "assistant", "content": text}],
                request=self._request(kwargs),
                answer_id=answer_id,
                response_id=response_id,
            )
            self.ledger.answer(
                self.chatbot_id,
                conversation,
                text,
                message_id=answer_id,
                in_reply_to=user.message_id if user is not None else None,
                provider=self.provider,
                model=model or requested,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                latency_ms=latency_ms,
                finish_reason=finish_reason,
            )

        self._guard(record)

    def _completed(
        self,
        conversation: str,
        user: Pending | None,
        kwargs: dict[str, Any],
        result: Any,
        started: float,
    ) -> None:
        latency = (time.perf_counter() - started) * 1000
        choices = _get(result, "choices") or []
        first = choices[0] if choices else None
        message = _get(first, "message") if first is not None else None
        usage = _get(result, "usage")
        self._record(
            conversation,
            user,
            kwargs,
            text=_text(_get(message, "content")) if message is not None else "",
            model=_get(result, "model"),
            finish_reason=_get(first, "finish_reason") if first is not None else None,
            input_tokens=_get(usage, "prompt_tokens") if usage is not None else None,
            output_tokens=_get(usage, "completion_tokens") if usage is not None else None,
            response_id=_get(result, "id"),
            latency_ms=latency,
        )

    def _finisher(
        self, conversation: str, user: Pending | None, kwargs: dict[str, Any], started: float
    ) -> _Collector:
        def done(collector: _Collector) -> None:
            self._record(
                conversation,
                user,
                kwargs,
                text="".join(collector.parts),
                model=collector.model,
                finish_reason=collector.finish_reason or "incomplete",
                input_tokens=collector.input_tokens,
                output_tokens=collector.output_tokens,
                response_id=collector.response_id,
                latency_ms=(time.perf_counter() - started) * 1000,
            )

        return _Collector(done)

    def _failed(
        self, conversation: str, kwargs: dict[str, Any], exc: Exception, started: float
    ) -> None:
        requested = kwargs.get("model")
        self._guard(
            lambda: self.ledger.model_call(
                self.chatbot_id,
                conversation,
                provider=self.provider,
                request_model=requested if isinstance(requested, str) else None,
                latency_ms=(time.perf_counter() - started) * 1000,
                messages=self._prompt(kwargs),
                request=self._request(kwargs),
                error=str(exc)[:4000],
                error_type=type(exc).__name__,
            )
        )


class _Collector:
    """Accumulates a streamed completion; calls ``done`` once, at the end or on close."""

    def __init__(self, done: Callable[[_Collector], None]) -> None:
        self._done = done
        self.finished = False
        self.parts: list[str] = []
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.response_id: str | None = None

    def observe(self, chunk: Any) -> None:
        self.model = _get(chunk, "model") or self.model
        self.response_id = _get(chunk, "id") or self.response_id
        usage = _get(chunk, "usage")
        if usage is not None:
            self.input_tokens = _get(usage, "prompt_tokens")
            self.output_tokens = _get(usage, "completion_tokens")
        for choice in _get(chunk, "choices") or []:
            if (_get(choice, "index") or 0) != 0:
                continue
            delta = _get(choice, "delta")
            content = _get(delta, "content") if delta is not None else None
            if isinstance(content, str):
                self.parts.append(content)
            reason = _get(choice, "finish_reason")
            if reason:
                self.finish_reason = str(reason)

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self._done(self)


class _Stream:
    """The stream the caller gets back: the same chunks, recorded when it ends."""

    def __init__(self, stream: Any, collector: _Collector) -> None:
        self._stream = stream
        self._collector = collector
        self._iterator: Iterator[Any] | None = None

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = iter(self._stream)
        try:
            chunk = next(self._iterator)
        except StopIteration:
            self._collector.finish()
            raise
        self._collector.observe(chunk)
        return chunk

    def close(self) -> None:
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        finally:
            self._collector.finish()

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _AsyncStream:
    def __init__(self, stream: Any, collector: _Collector) -> None:
        self._stream = stream
        self._collector = collector
        self._iterator: AsyncIterator[Any] | None = None

    def __aiter__(self) -> _AsyncStream:
        return self

    async def __anext__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._stream.__aiter__()
        try:
            chunk = await self._iterator.__anext__()
        except StopAsyncIteration:
            self._collector.finish()
            raise
        self._collector.observe(chunk)
        return chunk

    async def close(self) -> None:
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                result = close()
                if inspect.isawaitable(result):
                    await result
        finally:
            self._collector.finish()

    async def __aenter__(self) -> _AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def instrument(
    openai_client: Any,
    ledger: LedgerClient,
    *,
    chatbot_id: str,
    conversation_id: ConversationId = None,
    provider: str = "openai",
    record_prompt: bool = True,
    strict: bool = True,
) -> Any:
    """Record every ``chat.completions.create`` call of ``openai_client`` (an ``OpenAI`` or
    ``AsyncOpenAI``, or anything shaped like them) into ``ledger``; returns the same client.

    ``conversation_id``: a fixed id, a function returning the current one (for example from
    your web framework's session), or None for one conversation per instrumented client.
    ``provider`` names the provider (``openai``, ``azure.ai.openai``, ``vllm``...).
    ``record_prompt=False`` leaves the prompt out of the ``model.call`` record.
    ``strict=False`` logs a recording failure instead of raising it (for example
    :class:`~chatledger.client.errors.BufferFull`); by default the call fails closed.
    The :class:`Instrumentation` is at ``client._chatledger``; ``uninstrument()`` undoes it.
    """
    existing = getattr(openai_client, "_chatledger", None)
    if isinstance(existing, Instrumentation):
        existing.uninstrument()
    instrumentation = Instrumentation(
        openai_client,
        ledger,
        chatbot_id,
        conversation_id,
        provider=provider,
        record_prompt=record_prompt,
        strict=strict,
    )
    instrumentation.install()
    openai_client._chatledger = instrumentation
    return openai_client
