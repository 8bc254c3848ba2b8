"""The chat path: conversations, messages, answers with sources, feedback, resolution.

A turn commits twice: the visitor's message as soon as it arrives (so it is on record even
if the model never answers), then the model call and the answer with every retrieved chunk,
its score, document version and hash, the citations and the groundedness signal.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import threading
import time
import unicodedata
import uuid
from collections.abc import Generator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from chatledger.chat.guarding import ChatGuard, Screening
from chatledger.chat.providers import ProviderRegistry
from chatledger.chatbots.service import Chatbot, ChatbotService
from chatledger.errors import Conflict, Forbidden, InvalidInput, NotFound
from chatledger.events import SYSTEM, Actor, Entity, Event, Outcome
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission
from chatledger.identity.service import require, same_workspace
from chatledger.ledger.entry import utc_timestamp
from chatledger.ledger.service import Ledger
from chatledger.ledger.writer import Receipt, WorkContext
from chatledger.rag.grounding import assess
from chatledger.rag.index_factory import index_for
from chatledger.rag.prompting import build_request, number_passages
from chatledger.rag.providers import ChatMessage, Completion, ProviderError, StreamDone, TextDelta
from chatledger.rag.retrieval import Hit

RESOLUTIONS = ("open", "resolved", "escalated", "abandoned")
BUILTIN_OUTCOMES = ("conversion", "deflection", "lead_capture")
CHANNELS_MAX = 50
FAILED_REPLY = (
    "Sorry, the assistant cannot answer right now. Your message was recorded; "
    "please try again shortly."
)

PendingCommit = Future[tuple[Any, list[Receipt]]]


@dataclass(frozen=True)
class Conversation:
    id: str
    chatbot_id: str
    workspace_id: str
    visitor_id: str | None
    user_id: str | None
    channel: str
    started_at: str
    last_activity_at: str
    ended_at: str | None
    resolution: str
    resolution_by: str | None
    resolution_at: str | None
    outcome_tags: list[str]
    config_version: int

    @property
    def subject(self) -> str:
        return self.user_id or self.visitor_id or self.id

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Attachment:
    name: str
    type: str
    size: int
    sha256: str

    @classmethod
    def parse(cls, data: Any) -> Attachment:
        if not isinstance(data, dict):
            raise InvalidInput("each attachment must be an object with name, type, size, sha256")
        try:
            item = cls(
                str(data["name"])[:255],
                str(data["type"])[:100],
                int(data["size"]),
                str(data["sha256"]).lower(),
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidInput("each attachment needs name, type, size and sha256") from None
        if len(item.sha256) != 64 or any(c not in "0123456789abcdef" for c in item.sha256):
            raise InvalidInput("attachment sha256 must be 64 hex characters")
        if item.size < 0:
            raise InvalidInput("attachment size must not be negative")
        return item


@dataclass
class TurnResult:
    conversation_id: str
    message_id: str
    answer: dict[str, Any]
    seq: int
    extra: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds, by phase

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "answer": self.answer,
            "seq": self.seq,
            **self.extra,
        }


_CONV_COLUMNS = (
    "id, chatbot_id, workspace_id, visitor_id, user_id, channel, started_at, last_activity_at, "
    "ended_at, resolution, resolution_by, resolution_at, outcome_tags, config_version"
)


def _conversation(row: Sequence[Any]) -> Conversation:
    values = list(row)
    values[12] = orjson.loads(values[12])
    values[13] = int(values[13])
    return Conversation(*values)


def _ident(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidInput(f"{what} must be a non-empty string of at most 200 characters")
    return value.strip()


def _valid_tag(tag: Any) -> bool:
    """An outcome tag: 1 to 64 characters that encode as UTF-8 (no lone surrogates, which
    the store cannot write) and contain no control characters."""
    if not isinstance(tag, str) or not 0 < len(tag) <= 64 or not tag.strip():
        return False
    try:
        tag.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(unicodedata.category(c) == "Cc" for c in tag)


def _answer_json(
    answer_id: str,
    completion: Completion,
    hits: list[Hit],
    cited: Sequence[str],
    groundedness: float,
    created_at: str,
) -> dict[str, Any]:
    return {
        "id": answer_id,
        "text": completion.text,
        "created_at": created_at,
        "provider": completion.provider,
        "model": completion.model,
        "usage": {
            "input_tokens": completion.input_tokens,
            "output_tokens": completion.output_tokens,
            "source": completion.usage_source,
        },
        "latency_ms": round(completion.latency_ms, 3),
        "finish_reason": completion.finish_reason,
        "groundedness": round(groundedness, 4),
        "unanswered": completion.unanswered,
        "sources": [
            {
                "document_id": h.document_id,
                "document_version": h.document_version,
                "chunk_id": h.chunk_id,
                "chunk_sha256": h.sha256,
                "score": round(h.score, 6),
                "heading": h.heading,
                "page": h.page,
                "text": h.text,
                "cited": h.chunk_id in cited,
            }
            for h in hits
        ],
    }


# A model that follows the citation instruction says so when the sources do not cover a
# question; these are the usual phrasings (the offline responder flags itself).
_UNANSWERED = re.compile(
    r"\b(i (?:do not|don't|don’t) know|i(?: am|'m|’m) not sure|i (?:could not|couldn't|couldn’t|"
    r"cannot|can't|can’t) find|(?:is|are) not (?:covered|mentioned) in|no information (?:about|on)|"
    r"(?:the )?(?:sources|passages|documents) do not (?:say|cover|mention))",
    re.IGNORECASE,
)


def looks_unanswered(text: str) -> bool:
    return bool(_UNANSWERED.search(text[:600]))


class ChatService:
    def __init__(
        self,
        ledger: Ledger,
        chatbots: ChatbotService,
        providers: ProviderRegistry,
        *,
        turn_slots: int = 0,
    ) -> None:
        self.ledger = ledger
        self.chatbots = chatbots
        self.providers = providers
        self.index = index_for(ledger.store)
        self.guard: ChatGuard | None = None
        self._clock = threading.local()
        # Admission control for the CPU-bound phases of a turn (screening, retrieval,
        # composing the record). Under the GIL, fifty threads time-slicing those phases
        # make every turn slow and starve the ledger's writer thread (a convoy); a few at a
        # time finish sooner and the rest queue. Waiting on a remote model holds no slot.
        self._turn_slots = threading.BoundedSemaphore(turn_slots or os.cpu_count() or 2)

    # -- conversations --------------------------------------------------------------------

    def start(
        self,
        principal: Principal,
        chatbot_id: str,
        *,
        user_id: str | None = None,
        visitor_id: str | None = None,
        channel: str = "api",
        user_agent: str | None = None,
    ) -> Conversation:
        self._require_chat(principal, chatbot_id)
        bot = self._bot(principal, chatbot_id)
        user_id = _ident(user_id, "user_id")
        visitor_id = _ident(visitor_id, "visitor_id")
        if user_id and visitor_id:
            raise InvalidInput("give user_id or visitor_id, not both")
        if not user_id and not visitor_id:
            visitor_id = f"v_{secrets.token_hex(8)}"
        channel = _ident(channel, "channel") or "api"
        conversation_id = f"conv_{uuid.uuid4().hex[:16]}"
        now = utc_timestamp()
        subject = user_id or visitor_id or conversation_id

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            ctx.txn.execute(
                f"INSERT INTO conversations ({_CONV_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 'open', NULL, NULL, '[]', ?)",
                (
                    conversation_id,
                    bot.id,
                    bot.workspace_id,
                    visitor_id,
                    user_id,
                    channel[:CHANNELS_MAX],
                    now,
                    now,
                    bot.config_version,
                ),
            )
            return None, [
                Event(
                    "conversation.start",
                    principal.actor,
                    Entity("conversation", conversation_id),
                    subject=subject,
                    attributes={
                        "chatbot_id": bot.id,
                        "conversation_id": conversation_id,
                        "channel": channel,
                        "config_version": bot.config_version,
                        "identity": "user" if user_id else "visitor",
                        "gen_ai.conversation.id": conversation_id,
                    },
                    payload={
                        "user_id": user_id,
                        "visitor_id": visitor_id,
                        "user_agent": (user_agent or "")[:500],
                        "ip": principal.ip,
                    },
                )
            ]

        self.ledger.transact(work)
        return self.get(principal, conversation_id)

    def get(self, principal: Principal, conversation_id: str) -> Conversation:
        conv = self.find(conversation_id)
        if conv is None:
            raise NotFound(f"no conversation {conversation_id}")
        same_workspace(principal, conv.workspace_id, "conversation", conversation_id)
        self._check_owner(principal, conv)
        return conv

    def find(self, conversation_id: str) -> Conversation | None:
        rows = self.ledger.store.query(
            f"SELECT {_CONV_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        )
        return _conversation(rows[0]) if rows else None

    def _check_owner(self, principal: Principal, conv: Conversation) -> None:
        if principal.via == "widget" and principal.actor.id != conv.visitor_id:
            raise Forbidden(
                "this conversation belongs to another visitor",
                details={"entity_type": "conversation", "entity_id": conv.id},
            )

    def _require_chat(self, principal: Principal, chatbot_id: str) -> None:
        if principal.via != "widget":
            require(principal, Permission.CHAT, "chatbot", chatbot_id)

    def _bot(self, principal: Principal, chatbot_id: str) -> Chatbot:
        bot = self.chatbots.find(chatbot_id)
        if bot is None:
            raise NotFound(f"no chatbot {chatbot_id}")
        same_workspace(principal, bot.workspace_id, "chatbot", chatbot_id)
        return bot

    # -- messages -------------------------------------------------------------------------

    def _accept_message(
        self, principal: Principal, conversation_id: str, text: Any, attachments: Any
    ) -> tuple[Conversation, Chatbot, str, PendingCommit, Screening, list[Attachment]]:
        """Check and screen a visitor's message and queue its transaction; the caller waits
        for the returned commit (:meth:`_committed`) before anything leaves the process."""
        conv = self.get(principal, conversation_id)
        self._require_chat(principal, conv.chatbot_id)
        if conv.ended_at:
            raise Conflict("the conversation has ended")
        bot = self._bot(principal, conv.chatbot_id)
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("text must be a non-empty string")
        limit = bot.config.guardrails.max_message_chars
        if len(text) > limit:
            raise InvalidInput(
                f"the message is longer than {limit} characters",
                details={"limit": limit, "length": len(text)},
            )
        items = [Attachment.parse(a) for a in (attachments or [])]
        if len(items) > 20:
            raise InvalidInput("at most 20 attachments per message")
        screening = Screening()
        if self.guard is not None:
            screening = self.guard.screen_message(principal, bot, conv.id, conv.subject, text)
        message_id = f"msg_{uuid.uuid4().hex[:16]}"
        now = utc_timestamp()

        def work(ctx: WorkContext) -> tuple[int, list[Event]]:
            seq = ctx.next_seq
            ctx.txn.execute(
                "INSERT INTO messages (id, conversation_id, role, created_at, seq, reply_to, "
                "status) VALUES (?, ?, 'user', ?, ?, NULL, ?)",
                (message_id, conv.id, now, seq, "blocked" if screening.blocked else "received"),
            )
            ctx.txn.execute(
                "UPDATE conversations SET last_activity_at = ? WHERE id = ?", (now, conv.id)
            )
            attributes: dict[str, Any] = {
                "chatbot_id": conv.chatbot_id,
                "conversation_id": conv.id,
                "message_id": message_id,
                "length": len(text),
                "attachments": [
                    {"type": a.type, "size": a.size, "sha256": a.sha256} for a in items
                ],
                "gen_ai.conversation.id": conv.id,
            }
            if screening.verdict is not None:
                attributes["guard"] = screening.verdict
            event = Event(
                "message.user",
                principal.actor,
                Entity("message", message_id),
                Outcome.BLOCKED if screening.blocked else Outcome.SUCCESS,
                subject=conv.subject,
                attributes=attributes,
                payload={"text": text, "attachments": [a.__dict__ for a in items]},
            )
            return seq, [event, *screening.events]

        started = time.perf_counter()
        pending = self.ledger.transact_later(work)
        self._charge_ledger(started)
        return conv, bot, message_id, pending, screening, items

    def _committed(self, pending: PendingCommit) -> int:
        """Wait for a queued turn transaction; the wait is the ledger's share of the turn."""
        started = time.perf_counter()
        try:
            return int(pending.result()[0])
        finally:
            self._charge_ledger(started)

    def _transact(self, work: Any) -> Any:
        """The ledger transaction of a turn, timed (for the Server-Timing header)."""
        started = time.perf_counter()
        try:
            return self.ledger.transact(work)
        finally:
            self._charge_ledger(started)

    def _charge_ledger(self, started: float) -> None:
        self._clock.ledger = getattr(self._clock, "ledger", 0.0) + time.perf_counter() - started

    def send(
        self, principal: Principal, conversation_id: str, text: Any, attachments: Any = None
    ) -> TurnResult:
        started = time.perf_counter()
        self._clock.ledger = 0.0
        result = self._send(principal, conversation_id, text, attachments)
        result.timings = {
            "ledger": self._clock.ledger * 1000,
            "total": (time.perf_counter() - started) * 1000,
        }
        return result

    def _send(
        self, principal: Principal, conversation_id: str, text: Any, attachments: Any = None
    ) -> TurnResult:
        with self._turn_slots:
            conv, bot, message_id, pending, screening, _ = self._accept_message(
                principal, conversation_id, text, attachments
            )
            if not screening.blocked:
                # Retrieval only reads; it runs while the message commits. Nothing goes to
                # the model, and no answer back, before the message is durable (fail closed).
                hits, retrieval_events = self._retrieve(principal, bot, conv, text)
        self._committed(pending)
        if screening.blocked:
            with self._turn_slots:
                return self._blocked_answer(principal, conv, bot, message_id)
        with self._turn_slots:
            request = self._request(bot, conv, text, hits)
        provider = self.providers.for_settings(bot.config.model, bot.config.retrieval.min_score)
        try:
            completion = provider.complete(request)
        except ProviderError as exc:
            self._record_failure(principal, conv, bot, message_id, exc)
            raise
        with self._turn_slots:
            return self._record_answer(
                principal,
                conv,
                bot,
                message_id,
                completion,
                hits,
                retrieval_events,
                screening,
                prompt=request.messages,
            )

    def stream(
        self, principal: Principal, conversation_id: str, text: Any, attachments: Any = None
    ) -> Generator[dict[str, Any], None, None]:
        """Server-sent events: ``delta`` events, then one ``answer`` (or ``error``) event."""
        with self._turn_slots:
            conv, bot, message_id, pending, screening, _ = self._accept_message(
                principal, conversation_id, text, attachments
            )
        self._committed(pending)  # before the stream opens, so a failure is a plain error

        def events() -> Generator[dict[str, Any], None, None]:
            if screening.blocked:
                with self._turn_slots:
                    result = self._blocked_answer(principal, conv, bot, message_id)
                yield {"event": "answer", "data": result.to_json()}
                return
            with self._turn_slots:
                hits, retrieval_events = self._retrieve(principal, bot, conv, text)
                request = self._request(bot, conv, text, hits)
            provider = self.providers.for_settings(bot.config.model, bot.config.retrieval.min_score)
            parts: list[str] = []
            started = time.perf_counter()
            stream = provider.stream(request)
            finished = False
            try:
                for item in stream:
                    if isinstance(item, TextDelta):
                        parts.append(item.text)
                        yield {"event": "delta", "data": {"text": item.text}}
                    elif isinstance(item, StreamDone):
                        finished = True
                        with self._turn_slots:
                            result = self._record_answer(
                                principal,
                                conv,
                                bot,
                                message_id,
                                item.completion,
                                hits,
                                retrieval_events,
                                screening,
                                prompt=request.messages,
                            )
                        yield {"event": "answer", "data": result.to_json()}
            except ProviderError as exc:
                self._record_failure(principal, conv, bot, message_id, exc)
                yield {
                    "event": "error",
                    "data": {
                        "code": exc.code,
                        "message": FAILED_REPLY,
                        "details": exc.details,
                        "message_id": message_id,
                    },
                }
                return
            finally:
                stream.close()
                if not finished and parts:  # the visitor went away mid-answer: keep what was said
                    partial = Completion(
                        "".join(parts),
                        provider.name,
                        bot.config.model.model,
                        0,
                        0,
                        "estimated",
                        "client_disconnected",
                        (time.perf_counter() - started) * 1000,
                    )
                    self._record_answer(
                        principal, conv, bot, message_id, partial, hits, retrieval_events, screening
                    )

        return events()

    def _retrieve(
        self, principal: Principal, bot: Chatbot, conv: Conversation, text: str
    ) -> tuple[list[Hit], list[Event]]:
        retrieval = bot.config.retrieval
        hits = self.index.search(
            self.ledger.store.read_connection(), bot.id, text, retrieval.top_k, retrieval.min_score
        )
        if self.guard is not None:
            return self.guard.screen_hits(principal, bot, conv.id, hits)
        return hits, []

    def _history(self, conv: Conversation) -> list[ChatMessage]:
        """Earlier turns of this conversation, from the ledger (the record, not a cache)."""
        history: list[ChatMessage] = []
        rows = self.ledger.store.query(
            "SELECT seq FROM ledger_entries WHERE conversation_id = ? AND action IN "
            "('message.user', 'message.answer') ORDER BY seq DESC LIMIT 12",
            (conv.id,),
        )
        for record in self.ledger.read_many([int(seq) for (seq,) in reversed(rows)]):
            if record.payload is None or record.entry.outcome == Outcome.BLOCKED:
                continue
            text = str(record.payload.get("text", ""))
            if record.entry.action == "message.user":
                history.append(ChatMessage("user", text))
            else:
                history.append(ChatMessage("assistant", text))
        return history[:-1] if history and history[-1].role == "user" else history

    def _request(self, bot: Chatbot, conv: Conversation, text: str, hits: list[Hit]) -> Any:
        model = bot.config.model
        return build_request(
            system_prompt=bot.config.system_prompt,
            hits=hits,
            question=text,
            history=self._history(conv),
            model=model.model,
            temperature=model.temperature,
            max_tokens=model.max_tokens,
        )

    def _blocked_answer(
        self, principal: Principal, conv: Conversation, bot: Chatbot, message_id: str
    ) -> TurnResult:
        reply = bot.config.guardrails.blocked_reply
        completion = Completion(reply, "guard", "policy", 0, 0, "estimated", "blocked", 0.0)
        return self._record_answer(
            principal, conv, bot, message_id, completion, [], [], None, blocked=True
        )

    def _record_answer(
        self,
        principal: Principal,
        conv: Conversation,
        bot: Chatbot,
        message_id: str,
        completion: Completion,
        hits: list[Hit],
        extra_events: list[Event],
        screening: Screening | None,
        *,
        blocked: bool = False,
        prompt: Sequence[ChatMessage] = (),
    ) -> TurnResult:
        if not completion.unanswered and not blocked and looks_unanswered(completion.text):
            completion = dataclasses.replace(completion, unanswered=True)
        passages = number_passages(hits)
        grounding = assess(completion.text, passages, unanswered=completion.unanswered)
        cited = list(grounding.cited_chunk_ids)
        answer_id = f"ans_{uuid.uuid4().hex[:16]}"
        now = utc_timestamp()
        answer = _answer_json(answer_id, completion, hits, cited, grounding.score, now)
        if screening is not None and screening.warned:
            answer["warning"] = "the message was flagged by the guard"
        model_attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": completion.provider,
            "gen_ai.request.model": bot.config.model.model,
            "gen_ai.response.model": completion.model,
            "gen_ai.usage.input_tokens": completion.input_tokens,
            "gen_ai.usage.output_tokens": completion.output_tokens,
            "gen_ai.response.finish_reasons": [completion.finish_reason],
            "gen_ai.conversation.id": conv.id,
            "usage_source": completion.usage_source,
            "latency_ms": round(completion.latency_ms, 3),
        }
        retrieved = [
            {
                "rank": i + 1,
                "chunk_id": h.chunk_id,
                "document_id": h.document_id,
                "document_version": h.document_version,
                "chunk_sha256": h.sha256,
                "score": round(h.score, 6),
                "cited": h.chunk_id in cited,
            }
            for i, h in enumerate(hits)
        ]

        def work(ctx: WorkContext) -> tuple[int, list[Event]]:
            seq = ctx.next_seq + 1  # model.call comes first
            ctx.txn.execute(
                "INSERT INTO messages (id, conversation_id, role, created_at, seq, reply_to, "
                "status) VALUES (?, ?, 'assistant', ?, ?, ?, ?)",
                (
                    answer_id,
                    conv.id,
                    now,
                    seq,
                    message_id,
                    "blocked"
                    if blocked
                    else ("unanswered" if completion.unanswered else "answered"),
                ),
            )
            ctx.txn.execute(
                "UPDATE conversations SET last_activity_at = ? WHERE id = ?", (now, conv.id)
            )
            common = {"chatbot_id": conv.chatbot_id, "conversation_id": conv.id}
            events = [
                Event(
                    "model.call",
                    SYSTEM,
                    Entity("model_call", answer_id),
                    subject=conv.subject,
                    attributes={**common, **model_attrs, "message_id": answer_id},
                    payload={"messages": [{"role": m.role, "content": m.content} for m in prompt]}
                    if prompt
                    else None,
                ),
                Event(
                    "message.answer",
                    SYSTEM,
                    Entity("message", answer_id),
                    Outcome.BLOCKED if blocked else Outcome.SUCCESS,
                    subject=conv.subject,
                    attributes={
                        **common,
                        **model_attrs,
                        "message_id": answer_id,
                        "in_reply_to": message_id,
                        "config_version": bot.config_version,
                        "groundedness": round(grounding.score, 6),
                        "groundedness_method": grounding.method,
                        "unanswered": completion.unanswered,
                        "retrieved": retrieved,
                        "cited": cited,
                        "invalid_citations": list(grounding.invalid_citations),
                    },
                    payload={"text": completion.text},
                ),
                *extra_events,
            ]
            if completion.unanswered:
                events.append(
                    Event(
                        "message.unanswered",
                        SYSTEM,
                        Entity("message", message_id),
                        subject=conv.subject,
                        attributes={
                            **common,
                            "message_id": message_id,
                            "answer_id": answer_id,
                            "best_score": round(max((h.score for h in hits), default=0.0), 6),
                        },
                    )
                )
            return seq, events

        seq = self._transact(work)[0]
        return TurnResult(conv.id, message_id, answer, seq)

    def _record_failure(
        self,
        principal: Principal,
        conv: Conversation,
        bot: Chatbot,
        message_id: str,
        exc: ProviderError,
    ) -> None:
        self.ledger.append(
            Event(
                "message.answer_failed",
                SYSTEM,
                Entity("message", message_id),
                Outcome.FAILURE,
                subject=conv.subject,
                attributes={
                    "chatbot_id": conv.chatbot_id,
                    "conversation_id": conv.id,
                    "message_id": message_id,
                    "reason": str(exc.details.get("reason")),
                    "gen_ai.provider.name": str(exc.details.get("provider")),
                    "gen_ai.request.model": bot.config.model.model,
                    "http_status": exc.details.get("http_status"),
                },
                payload={"error": exc.message, "shown_to_visitor": FAILED_REPLY},
            )
        )

    # -- feedback, resolution, outcomes ---------------------------------------------------

    def feedback(
        self, principal: Principal, message_id: str, rating: Any, comment: Any = None
    ) -> dict[str, Any]:
        if rating not in ("positive", "negative"):
            raise InvalidInput("rating must be 'positive' or 'negative'")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
            raise InvalidInput("comment must be a string of at most 2000 characters")
        rows = self.ledger.store.query(
            "SELECT conversation_id, role FROM messages WHERE id = ?", (message_id,)
        )
        if not rows:
            raise NotFound(f"no message {message_id}")
        conv = self.get(principal, rows[0][0])
        self._require_chat(principal, conv.chatbot_id)
        if rows[0][1] != "assistant":
            raise InvalidInput("feedback is given on answers (ids starting with ans_)")
        now = utc_timestamp()
        receipt = self.ledger.append(
            Event(
                "message.feedback",
                principal.actor,
                Entity("message", message_id),
                subject=conv.subject,
                attributes={
                    "chatbot_id": conv.chatbot_id,
                    "conversation_id": conv.id,
                    "message_id": message_id,
                    "rating": rating,
                    "has_comment": bool(comment),
                },
                payload={"comment": comment} if comment else None,
            )
        )
        return {
            "message_id": message_id,
            "rating": rating,
            "comment": comment,
            "created_at": now,
            "seq": receipt.seq,
        }

    def update(
        self, principal: Principal, conversation_id: str, changes: dict[str, Any]
    ) -> Conversation:
        conv = self.get(principal, conversation_id)
        if principal.via == "widget":
            allowed = {"ended"}
        else:
            require(principal, Permission.CONVERSATION_MANAGE, "conversation", conversation_id)
            allowed = {"resolution", "outcome_tags", "ended"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInput(f"cannot change {sorted(unknown)[0]!r}")
        resolution = changes.get("resolution")
        if resolution is not None and resolution not in RESOLUTIONS[1:]:
            raise InvalidInput("resolution must be resolved, escalated or abandoned")
        tags = changes.get("outcome_tags")
        if tags is not None:
            if not isinstance(tags, list) or not all(_valid_tag(t) for t in tags):
                raise InvalidInput(
                    "outcome_tags must be a list of short strings (1 to 64 characters, "
                    "valid Unicode, no control characters)"
                )
            tags = sorted(set(tags))
        ended = changes.get("ended")
        if ended is not None and not isinstance(ended, bool):
            raise InvalidInput("ended must be true or false")
        self._apply(principal.actor, conv, resolution, tags, bool(ended), reason="set")
        return self.get(principal, conversation_id)

    def _apply(
        self,
        actor: Actor,
        conv: Conversation,
        resolution: str | None,
        tags: list[str] | None,
        end: bool,
        *,
        reason: str,
        idle_before: str | None = None,
    ) -> bool:
        """Change a conversation and record the change, before and after, in one transaction.

        The before state is read inside the transaction (``conv`` may be stale by then: other
        requests change the same conversation concurrently), so what the ledger records as
        ``previous``/``removed`` is what the row held when the change was made. With
        ``idle_before`` (the idle-timeout sweep) nothing changes unless the conversation is
        still open, not ended and idle since before that moment. True if anything changed.
        """
        lock = " FOR UPDATE" if self.ledger.store.dialect == "postgresql" else ""

        def work(ctx: WorkContext) -> tuple[bool, list[Event]]:
            rows = ctx.txn.execute(
                f"SELECT {_CONV_COLUMNS} FROM conversations WHERE id = ?{lock}", (conv.id,)
            )
            if not rows:
                return False, []
            current = _conversation(rows[0])
            if idle_before is not None and (
                current.resolution != "open"
                or current.ended_at
                or current.last_activity_at >= idle_before
            ):
                return False, []
            events = self._changes(ctx, actor, current, resolution, tags, end, reason)
            return bool(events), events

        return self.ledger.transact(work)[0]

    def _changes(
        self,
        ctx: WorkContext,
        actor: Actor,
        conv: Conversation,
        resolution: str | None,
        tags: list[str] | None,
        end: bool,
        reason: str,
    ) -> list[Event]:
        """Inside the transaction: apply the changes to ``conv`` (the row as read in it)."""
        now = utc_timestamp()
        events: list[Event] = []

        def record(action: str, **attributes: Any) -> None:
            common = {"chatbot_id": conv.chatbot_id, "conversation_id": conv.id}
            events.append(
                Event(
                    action,
                    actor,
                    Entity("conversation", conv.id),
                    subject=conv.subject,
                    attributes={**common, **attributes},
                )
            )

        if resolution is not None and resolution != conv.resolution:
            ctx.txn.execute(
                "UPDATE conversations SET resolution = ?, resolution_by = ?, resolution_at = ? "
                "WHERE id = ?",
                (resolution, actor.id, now, conv.id),
            )
            record(
                "conversation.resolution",
                resolution=resolution,
                previous=conv.resolution,
                set_by=actor.type,
                reason=reason,
            )
        if tags is not None and tags != conv.outcome_tags:
            ctx.txn.execute(
                "UPDATE conversations SET outcome_tags = ? WHERE id = ?",
                (orjson.dumps(tags).decode(), conv.id),
            )
            record(
                "conversation.outcome",
                tags=tags,
                added=sorted(set(tags) - set(conv.outcome_tags)),
                removed=sorted(set(conv.outcome_tags) - set(tags)),
                custom=sorted(set(tags) - set(BUILTIN_OUTCOMES)),
            )
        if end and not conv.ended_at:
            ctx.txn.execute("UPDATE conversations SET ended_at = ? WHERE id = ?", (now, conv.id))
            record("conversation.end", started_at=conv.started_at, ended_at=now)
        return events

    def abandon_idle(self, now: datetime | None = None) -> int:
        """Mark open conversations idle past their chatbot's timeout as abandoned."""
        moment = now or datetime.now(UTC)
        rows = self.ledger.store.query(
            f"SELECT {_CONV_COLUMNS} FROM conversations WHERE resolution = 'open' "
            "AND ended_at IS NULL AND last_activity_at < ? ORDER BY last_activity_at LIMIT 500",
            (utc_timestamp(moment - timedelta(minutes=1)),),
        )
        count = 0
        for row in rows:
            conv = _conversation(row)
            bot = self.chatbots.find(conv.chatbot_id, include_deleted=True)
            idle = timedelta(minutes=bot.config.idle_timeout_minutes if bot else 30)
            if conv.last_activity_at < utc_timestamp(moment - idle):
                count += self._apply(
                    SYSTEM,
                    conv,
                    "abandoned",
                    None,
                    True,
                    reason="idle_timeout",
                    idle_before=utc_timestamp(moment - idle),
                )
        return count

    def require_read(self, principal: Principal, conv: Conversation) -> None:
        if principal.via == "widget":
            return
        if not principal.can(Permission.CONVERSATION_READ) and not principal.can(Permission.CHAT):
            raise Forbidden("this role may not read conversations")
