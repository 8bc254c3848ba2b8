"""The ChatLedger client: record what a chatbot built elsewhere does, without slowing it down.

Every ``record_*`` call validates its arguments, writes one record to the local buffer (a
small SQLite spool) and returns at once with a :class:`Pending` handle; a background thread
sends the buffer in batches to ``POST /api/v1/ingest/events`` and resolves each handle with
the record's ledger seq once the server has made it durable. Each record carries an
idempotency key generated here, so a batch re-sent after a timeout, a crash or a restart is
stored exactly once. While the server is unreachable the records wait in the buffer
(retried with exponential backoff and jitter, honouring ``Retry-After``); when the buffer is
full, recording raises :class:`BufferFull`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from chatledger.client.errors import (
    BufferFull,
    ClientClosed,
    FlushTimeout,
    RecordRejected,
    describe,
)
from chatledger.client.ids import ledger_conversation_id
from chatledger.client.spool import Spool

log = logging.getLogger("chatledger.client")

INGEST_PATH = "/api/v1/ingest/events"
RESOLUTIONS = ("open", "resolved", "escalated", "abandoned")
RATINGS = ("positive", "negative")
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_LIVE: weakref.WeakSet[LedgerClient] = weakref.WeakSet()
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False)


@atexit.register
def _persist_at_exit() -> None:
    """An application that exits without close(): its last records still reach the spool."""
    for client in list(_LIVE):
        with contextlib.suppress(Exception):
            client._drain_queue()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _need(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    return value


def _new_id(prefix: str) -> str:
    return f"{prefix}-{os.urandom(12).hex()}"


class Pending:
    """A recorded item on its way to the ledger: ``result()`` waits for its seq."""

    __slots__ = ("_cond", "_done", "_error", "_seq", "conversation_id", "key", "message_id", "type")

    def __init__(
        self,
        key: str,
        kind: str,
        conversation_id: str | None,
        message_id: str | None,
        cond: threading.Condition,
    ) -> None:
        self.key = key
        self.type = kind
        self.conversation_id = conversation_id
        self.message_id = message_id
        """The application-side id of the message, answer, retrieval or call recorded."""
        self._cond = cond  # the client's: notified whenever records are settled
        self._done = False
        self._seq: int | None = None
        self._error: RecordRejected | None = None

    def _settle(self, seq: int | None, error: RecordRejected | None) -> None:
        """Called with the client's condition held."""
        self._seq, self._error, self._done = seq, error, True

    def result(self, timeout: float | None = None) -> int:
        """The ledger seq once the server has made the record durable.

        Raises :class:`RecordRejected` if the server refused it, :class:`FlushTimeout` if it
        is not acknowledged within ``timeout`` seconds (it stays buffered and is sent later).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._done:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise FlushTimeout(1, None)
                self._cond.wait(remaining)
        if self._error is not None:
            raise self._error
        assert self._seq is not None
        return self._seq

    @property
    def seq(self) -> int | None:
        """The seq if already acknowledged, else None (never blocks)."""
        return self._seq

    def done(self) -> bool:
        return self._done

    def __repr__(self) -> str:
        return f"Pending({self.type}, key={self.key!r}, seq={self._seq})"


class LedgerClient:
    """An authenticated, buffering client of a ChatLedger server.

    ``base_url`` is the server (``https://ledger.example.com``); ``api_key`` a key whose role
    has the ``chat`` permission (agent, editor, admin). ``spool_dir`` is where the buffer
    lives; without it the buffer is in memory and does not survive a restart.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        spool_dir: str | Path | None = None,
        max_buffer_records: int = 100_000,
        max_buffer_bytes: int = 256 * 1024 * 1024,
        durable: bool = False,
        batch_size: int = 500,
        max_request_bytes: int = 4 * 1024 * 1024,
        flush_interval: float = 0.25,
        persist_interval: float = 0.01,
        timeout: float = 10.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        start: bool = True,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        self.base_url = base_url.rstrip("/")
        self.batch_size = max(1, batch_size)
        self.max_request_bytes = max_request_bytes
        self.flush_interval = flush_interval
        self.persist_interval = persist_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_buffer_records = max_buffer_records
        self.max_buffer_bytes = max_buffer_bytes
        self._spool = Spool(spool_dir, durable=durable)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "authorization": f"Bearer {api_key}",
                "content-type": "application/json",
                "user-agent": "chatledger-client/0.1",
            },
            timeout=timeout,
            transport=transport,
        )
        # record() appends to this queue; the spool writer moves it into SQLite within
        # milliseconds (one transaction per drain), the sender ships SQLite to the server.
        self._queue: deque[tuple[str, bytes]] = deque()
        self._queue_bytes = 0
        self._queue_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._moving = (0, 0)  # records (and bytes) between the queue and the spool
        self._persist = threading.Event()
        self._pending: dict[str, Pending] = {}
        self._pending_lock = threading.Lock()
        self._settled = threading.Condition()
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self.last_error: str | None = None
        """Why the last delivery attempt failed (None after a success)."""
        self.sent_batches = 0
        self._thread: threading.Thread | None = None
        self._writer = threading.Thread(
            target=self._persist_loop, name="chatledger-client-spool", daemon=True
        )
        self._writer.start()
        _LIVE.add(self)
        if start:
            self.start()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background sender (done by the constructor unless ``start=False``)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="chatledger-client-sender", daemon=True
            )
            self._thread.start()

    def _pending_count(self) -> int:
        with self._queue_lock:
            return len(self._queue) + self._moving[0] + self._spool.count

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every buffered record (this run's and earlier runs') is acknowledged.

        Raises :class:`FlushTimeout` if some are still waiting after ``timeout`` seconds."""
        if self._thread is None:
            raise ClientClosed("the client's sender is not running: call start()")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._settled:
            while self._pending_count() > 0:
                self._persist.set()
                self._hurry.set()
                self._wake.set()
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise FlushTimeout(self._pending_count(), self.last_error)
                self._settled.wait(min(remaining, 0.1))

    def close(self, *, flush: bool = True, timeout: float = 10.0) -> None:
        """Send what is buffered (up to ``timeout``), then stop. Records not yet sent stay in
        the spool and go out on the next start with the same ``spool_dir``."""
        if self._closed:
            return
        try:
            if flush and self._thread is not None:
                try:
                    self.flush(timeout)
                except FlushTimeout as exc:
                    log.warning("chatledger: %s; they stay buffered", exc)
        finally:
            self._closed = True
            _LIVE.discard(self)
            self._stop.set()
            self._wake.set()
            self._hurry.set()
            self._persist.set()
            self._writer.join(timeout=30)
            if self._thread is not None:
                self._thread.join(timeout=max(timeout, 1.0) + 5)
            self._drain_queue()  # whatever arrived while stopping
            self._http.close()
            self._spool.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def buffered(self) -> int:
        """Records waiting for the server (in memory or in the spool)."""
        return self._pending_count()

    def seq_of(self, key: str) -> int | None:
        """The seq of an acknowledged record by its key (also one sent by an earlier run)."""
        return self._spool.seq_of(key)

    def rejected(self) -> list[tuple[str, str, str]]:
        """(key, code, message) of every record the server refused for good."""
        return self._spool.rejected()

    # -- the local buffer -----------------------------------------------------------------

    def _persist_loop(self) -> None:
        while not self._stop.is_set():
            self._persist.wait(self.persist_interval)
            self._persist.clear()
            self._drain_queue()

    def _drain_queue(self) -> None:
        with self._drain_lock:
            with self._queue_lock:
                if not self._queue:
                    return
                items = list(self._queue)
                self._queue.clear()
                self._moving = (len(items), self._queue_bytes)
                self._queue_bytes = 0
            try:
                self._spool.put_many(items)
            except Exception as exc:  # disk full, spool deleted: keep them in memory
                log.error("chatledger: cannot write the spool: %s", exc)
                self.last_error = describe(exc)
                with self._queue_lock:
                    self._queue.extendleft(reversed(items))
                    self._queue_bytes += self._moving[1]
                    self._moving = (0, 0)
                return
            with self._queue_lock:
                self._moving = (0, 0)
        if self._spool.count >= self.batch_size:
            self._wake.set()

    # -- recording ------------------------------------------------------------------------

    def record(
        self,
        kind: str,
        chatbot_id: str,
        conversation_id: str,
        data: Mapping[str, Any],
        *,
        key: str | None = None,
        occurred_at: str | None = None,
        item_id: str | None = None,
    ) -> Pending:
        """Buffer one record (the typed helpers below build ``data``); never waits on I/O.

        Raises :class:`BufferFull` when the buffer is at its limits (nothing is recorded)."""
        if self._closed:
            raise ClientClosed("the client is closed")
        key = key or os.urandom(16).hex()
        body = {
            "key": key,
            "type": kind,
            "chatbot_id": _need(chatbot_id, "chatbot_id"),
            "conversation_id": _need(conversation_id, "conversation_id"),
            "occurred_at": occurred_at or _now(),
            "data": {k: v for k, v in data.items() if v is not None},
        }
        try:
            encoded = _ENCODER.encode(body).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"the record cannot be sent as JSON: {exc}") from exc
        with self._pending_lock:
            pending = self._pending.get(key)
            if pending is None:
                pending = Pending(key, kind, conversation_id, item_id, self._settled)
                self._pending[key] = pending
        with self._queue_lock:
            count = len(self._queue) + self._moving[0] + self._spool.count
            size = self._queue_bytes + self._moving[1] + self._spool.size
            if count + 1 > self.max_buffer_records or size + len(encoded) > self.max_buffer_bytes:
                raise BufferFull(
                    count, size, self.max_buffer_records, self.max_buffer_bytes, self.last_error
                )
            self._queue.append((key, encoded))
            self._queue_bytes += len(encoded)
            backlog = len(self._queue)
        if backlog >= 256:
            self._persist.set()
        return pending

    def conversation(
        self,
        chatbot_id: str,
        conversation_id: str | None = None,
        *,
        user_id: str | None = None,
        visitor_id: str | None = None,
        channel: str | None = None,
        user_agent: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Conversation:
        """Start recording a conversation (records ``conversation.start``) and return a
        handle whose methods record into it."""
        conversation_id = conversation_id or _new_id("conv")
        started = self.start_conversation(
            chatbot_id,
            conversation_id,
            user_id=user_id,
            visitor_id=visitor_id,
            channel=channel,
            user_agent=user_agent,
            metadata=metadata,
        )
        return Conversation(self, chatbot_id, conversation_id, started)

    def start_conversation(
        self,
        chatbot_id: str,
        conversation_id: str,
        *,
        user_id: str | None = None,
        visitor_id: str | None = None,
        channel: str | None = None,
        user_agent: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        occurred_at: str | None = None,
    ) -> Pending:
        if user_id and visitor_id:
            raise ValueError("give user_id or visitor_id, not both")
        data = {
            "user_id": user_id,
            "visitor_id": visitor_id,
            "channel": channel,
            "user_agent": user_agent,
            "metadata": dict(metadata) if metadata else None,
        }
        return self.record(
            "conversation.start", chatbot_id, conversation_id, data, occurred_at=occurred_at
        )

    def user_message(
        self,
        chatbot_id: str,
        conversation_id: str,
        text: str,
        *,
        message_id: str | None = None,
        attachments: Sequence[Mapping[str, Any]] | None = None,
        occurred_at: str | None = None,
        key: str | None = None,
    ) -> Pending:
        """A visitor's message: exact text, attachments (name, type, size, sha256)."""
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        message_id = message_id or _new_id("msg")
        data = {
            "message_id": message_id,
            "text": text,
            "attachments": [dict(a) for a in attachments] if attachments else None,
        }
        return self.record(
            "message.user",
            chatbot_id,
            conversation_id,
            data,
            occurred_at=occurred_at,
            item_id=message_id,
            key=key,
        )

    def retrieval(
        self,
        chatbot_id: str,
        conversation_id: str,
        chunks: Iterable[Mapping[str, Any]],
        *,
        query: str | None = None,
        message_id: str | None = None,
        retrieval_id: str | None = None,
        data_source: str | None = None,
        top_k: int | None = None,
        occurred_at: str | None = None,
    ) -> Pending:
        """What retrieval returned: per chunk ``chunk_id``, ``document_id``,
        ``document_version``, ``source``, ``score``, ``text`` (its SHA-256 is computed by the
        server) or ``sha256``, ``rank``, ``metadata``. ``message_id`` names the user message
        the retrieval served."""
        retrieval_id = retrieval_id or _new_id("ret")
        items = []
        for chunk in chunks:
            item = dict(chunk)
            score = item.get("score")
            if isinstance(score, float) and not math.isfinite(score):
                raise ValueError("chunk scores must be finite numbers")
            items.append(item)
        data = {
            "retrieval_id": retrieval_id,
            "message_id": message_id,
            "query": query,
            "data_source": data_source,
            "top_k": top_k,
            "chunks": items,
        }
        return self.record(
            "message.retrieval",
            chatbot_id,
            conversation_id,
            data,
            occurred_at=occurred_at,
            item_id=retrieval_id,
        )

    def model_call(
        self,
        chatbot_id: str,
        conversation_id: str,
        *,
        provider: str | None = None,
        request_model: str | None = None,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        latency_ms: float | None = None,
        finish_reason: str | None = None,
        operation: str = "chat",
        messages: Sequence[Mapping[str, Any]] | None = None,
        output: Sequence[Mapping[str, Any]] | None = None,
        request: Mapping[str, Any] | None = None,
        answer_id: str | None = None,
        call_id: str | None = None,
        response_id: str | None = None,
        error: str | None = None,
        error_type: str | None = None,
        occurred_at: str | None = None,
    ) -> Pending:
        """One call to a model: provider and models, token usage, latency, finish reason,
        the prompt (``messages``) and output; ``answer_id`` names the answer it produced."""
        call_id = call_id or _new_id("call")
        data = {
            "call_id": call_id,
            "message_id": answer_id,
            "operation": operation,
            "provider": provider,
            "request_model": request_model,
            "response_model": response_model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "latency_ms": round(latency_ms, 3) if latency_ms is not None else None,
            "finish_reason": finish_reason,
            "response_id": response_id,
            "messages": [dict(m) for m in messages] if messages is not None else None,
            "output": [dict(m) for m in output] if output is not None else None,
            "request": dict(request) if request else None,
            "error": error,
            "error_type": error_type,
        }
        return self.record(
            "model.call",
            chatbot_id,
            conversation_id,
            data,
            occurred_at=occurred_at,
            item_id=call_id,
        )

    def answer(
        self,
        chatbot_id: str,
        conversation_id: str,
        text: str,
        *,
        in_reply_to: str | None = None,
        message_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        latency_ms: float | None = None,
        finish_reason: str | None = None,
        retrieval_id: str | None = None,
        groundedness: float | None = None,
        unanswered: bool = False,
        cited: Sequence[str] | None = None,
        occurred_at: str | None = None,
    ) -> Pending:
        """The chatbot's answer: exact text, the model that wrote it and its usage, the
        retrieval it used, groundedness (0..1), cited chunk ids; ``unanswered=True`` for an
        "I don't know"."""
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        message_id = message_id or _new_id("ans")
        data = {
            "message_id": message_id,
            "text": text,
            "in_reply_to": in_reply_to,
            "provider": provider,
            "response_model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "latency_ms": round(latency_ms, 3) if latency_ms is not None else None,
            "finish_reason": finish_reason,
            "retrieval_id": retrieval_id,
            "groundedness": groundedness,
            "unanswered": unanswered or None,
            "cited": list(cited) if cited else None,
        }
        return self.record(
            "message.answer",
            chatbot_id,
            conversation_id,
            data,
            occurred_at=occurred_at,
            item_id=message_id,
        )

    def feedback(
        self,
        chatbot_id: str,
        conversation_id: str,
        message_id: str,
        rating: str,
        comment: str | None = None,
        *,
        occurred_at: str | None = None,
    ) -> Pending:
        """A visitor's rating (``positive`` / ``negative``) of an answer, with a comment."""
        if rating not in RATINGS:
            raise ValueError("rating must be 'positive' or 'negative'")
        data = {"message_id": _need(message_id, "message_id"), "rating": rating, "comment": comment}
        return self.record(
            "message.feedback", chatbot_id, conversation_id, data, occurred_at=occurred_at
        )

    def resolve(
        self,
        chatbot_id: str,
        conversation_id: str,
        resolution: str,
        *,
        set_by: str | None = None,
        reason: str | None = None,
        occurred_at: str | None = None,
    ) -> Pending:
        """The conversation's resolution status (open, resolved, escalated, abandoned), with
        who or what set it."""
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
        data = {"resolution": resolution, "set_by": set_by, "reason": reason}
        return self.record(
            "conversation.resolution", chatbot_id, conversation_id, data, occurred_at=occurred_at
        )

    def outcome(
        self,
        chatbot_id: str,
        conversation_id: str,
        tags: Sequence[str],
        *,
        replace: bool = False,
        occurred_at: str | None = None,
    ) -> Pending:
        """Outcome tags (conversion, deflection, lead_capture or your own): added to the
        conversation's tags, or replacing them with ``replace=True``."""
        if isinstance(tags, str):
            raise ValueError("tags must be a list of strings")
        data = {"tags": list(tags), "replace": replace or None}
        return self.record(
            "conversation.outcome", chatbot_id, conversation_id, data, occurred_at=occurred_at
        )

    def end_conversation(
        self,
        chatbot_id: str,
        conversation_id: str,
        *,
        reason: str | None = None,
        occurred_at: str | None = None,
    ) -> Pending:
        return self.record(
            "conversation.end",
            chatbot_id,
            conversation_id,
            {"reason": reason},
            occurred_at=occurred_at,
        )

    def custom(
        self,
        action: str,
        chatbot_id: str,
        conversation_id: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None,
        occurred_at: str | None = None,
    ) -> Pending:
        """Any other fact, as a ``custom.*`` event (``attributes`` in the clear, ``payload``
        encrypted and erasable)."""
        if not action.startswith("custom."):
            raise ValueError("custom actions start with 'custom.'")
        data = {
            "attributes": dict(attributes) if attributes else None,
            "payload": dict(payload) if payload is not None else None,
        }
        return self.record(action, chatbot_id, conversation_id, data, occurred_at=occurred_at)

    # -- the sender -----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.backoff_initial
        limit = self.batch_size
        while not self._stop.is_set():
            batch = self._spool.batch(limit, self.max_request_bytes)
            if not batch:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                continue
            delay = self._send(batch)
            if delay is None:
                backoff = self.backoff_initial
                limit = min(self.batch_size, limit * 2)
                continue
            if delay < 0:  # the server refused the batch's size: send smaller ones
                limit = max(1, len(batch) // 2)
                continue
            wait = min(self.backoff_max, max(delay, backoff)) * random.uniform(0.8, 1.2)
            backoff = min(self.backoff_max, backoff * 2)
            self._hurry.wait(wait)
            self._hurry.clear()

    def _send(self, batch: list[tuple[str, bytes]]) -> float | None:
        """Send one batch; None on success, a delay before retrying, or -1 to split it."""
        body = b'{"records":[' + b",".join(b for _, b in batch) + b"]}"
        try:
            response = self._http.post(INGEST_PATH, content=body)
        except httpx.HTTPError as exc:  # timeouts, refused connections, resets
            self.last_error = describe(exc)
            return self.backoff_initial
        status = response.status_code
        if status == 200:
            try:
                results = response.json()["results"]
                if len(results) != len(batch):
                    raise ValueError("one result per record expected")
            except (ValueError, KeyError, TypeError) as exc:
                self.last_error = f"unreadable answer from the server: {exc}"
                return self.backoff_initial
            self._settle(batch, results)
            self.last_error = None
            self.sent_batches += 1
            return None
        self.last_error = f"HTTP {status}: {response.text[:300]}"
        if status in (413, 400, 422) and len(batch) > 1:
            return -1.0
        if status in (413, 400, 422):
            key = batch[0][0]
            self._settle(
                batch,
                [
                    {
                        "key": key,
                        "status": "rejected",
                        "error": {"code": str(status), "message": response.text[:500]},
                    }
                ],
            )
            return None
        if status in _RETRY_STATUSES:
            return _retry_after(response) or self.backoff_initial
        # 401/403 (key revoked or wrong), 404 (wrong URL), ...: keep everything, retry slowly
        log.warning("chatledger: the server refused a batch: %s", self.last_error)
        return self.backoff_max

    def _settle(self, batch: list[tuple[str, bytes]], results: list[dict[str, Any]]) -> None:
        acked: list[tuple[str, int | None]] = []
        rejected: list[tuple[str, str, str]] = []
        outcomes: list[tuple[str, int | None, RecordRejected | None]] = []
        for (key, _), result in zip(batch, results, strict=False):
            if result.get("status") == "rejected":
                error = result.get("error") or {}
                code, message = str(error.get("code")), str(error.get("message"))
                rejected.append((key, code, message))
                outcomes.append((key, None, RecordRejected(key, code, message)))
            else:
                seq = result.get("seq")
                seq = int(seq) if isinstance(seq, int) else None
                acked.append((key, seq))
                outcomes.append((key, seq, None))
        self._spool.settle(acked, rejected)
        with self._pending_lock:
            waiting = [(self._pending.pop(key, None), seq, err) for key, seq, err in outcomes]
        with self._settled:
            for pending, seq, err in waiting:
                if pending is None or pending.done():
                    continue
                if err is None and seq is None:
                    err = RecordRejected(pending.key, "no_seq", "the server gave no seq")
                pending._settle(seq, err)
            self._settled.notify_all()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class Conversation:
    """A handle on one recorded conversation: every method records into it."""

    def __init__(
        self, client: LedgerClient, chatbot_id: str, conversation_id: str, started: Pending
    ) -> None:
        self.client = client
        self.chatbot_id = chatbot_id
        self.id = conversation_id
        self.started = started

    @property
    def ledger_id(self) -> str:
        """The ledger's id of this conversation (for replay and search)."""
        return ledger_conversation_id(self.chatbot_id, self.id)

    def user_message(self, text: str, **kwargs: Any) -> Pending:
        return self.client.user_message(self.chatbot_id, self.id, text, **kwargs)

    def retrieval(self, chunks: Iterable[Mapping[str, Any]], **kwargs: Any) -> Pending:
        return self.client.retrieval(self.chatbot_id, self.id, chunks, **kwargs)

    def model_call(self, **kwargs: Any) -> Pending:
        return self.client.model_call(self.chatbot_id, self.id, **kwargs)

    def answer(self, text: str, **kwargs: Any) -> Pending:
        return self.client.answer(self.chatbot_id, self.id, text, **kwargs)

    def feedback(self, message_id: str, rating: str, comment: str | None = None) -> Pending:
        return self.client.feedback(self.chatbot_id, self.id, message_id, rating, comment)

    def resolve(self, resolution: str, **kwargs: Any) -> Pending:
        return self.client.resolve(self.chatbot_id, self.id, resolution, **kwargs)

    def outcome(self, tags: Sequence[str], **kwargs: Any) -> Pending:
        return self.client.outcome(self.chatbot_id, self.id, tags, **kwargs)

    def end(self, **kwargs: Any) -> Pending:
        return self.client.end_conversation(self.chatbot_id, self.id, **kwargs)
