"""Conversations, messages (JSON or server-sent events), feedback, resolution, replay."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncGenerator, Generator
from typing import Any, Literal

import anyio
import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from chatledger.api.auth import CurrentPrincipal, PlatformDep
from chatledger.chat.replay import replay_conversation
from chatledger.events import Entity, Event
from chatledger.identity.roles import Permission
from chatledger.identity.service import require

router = APIRouter(tags=["conversations"])
log = logging.getLogger(__name__)


class ConversationStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str | None = Field(default=None, max_length=200)
    visitor_id: str | None = Field(default=None, max_length=200)
    channel: str = Field(default="api", max_length=50)


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=255)
    type: str = Field(max_length=100)
    size: int = Field(ge=0)
    sha256: str = Field(min_length=64, max_length=64)


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=100_000)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=20)
    stream: bool = False


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Literal["positive", "negative"]
    comment: str | None = Field(default=None, max_length=2000)


class ConversationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resolution: Literal["resolved", "escalated", "abandoned"] | None = None
    outcome_tags: list[str] | None = Field(default=None, max_length=50)
    ended: bool | None = None


@router.post("/chatbots/{chatbot_id}/conversations", status_code=201)
def start_conversation(
    chatbot_id: str,
    request: Request,
    principal: CurrentPrincipal,
    platform: PlatformDep,
    body: ConversationStart | None = None,
) -> dict[str, Any]:
    body = body or ConversationStart()
    conv = platform.chat.start(
        principal,
        chatbot_id,
        user_id=body.user_id,
        visitor_id=body.visitor_id,
        channel=body.channel,
        user_agent=request.headers.get("user-agent"),
    )
    return conv.to_json()


def _sse_event(item: dict[str, Any]) -> bytes:
    return f"event: {item['event']}\ndata: ".encode() + orjson.dumps(item["data"]) + b"\n\n"


class EventStream(StreamingResponse):
    """Server-sent events from a blocking generator that records as it goes.

    Each step of the generator runs in a worker thread. However the response ends (the answer
    is complete, the client disconnects, the server cancels the request on shutdown) the
    generator is closed here, in a worker thread and shielded from cancellation, so its
    ``finally`` (which records a partial answer in the ledger) runs at once, not whenever
    the generator happens to be garbage collected. A step still running in its thread when
    the request is cancelled is waited for: a generator cannot be closed while it executes.
    """

    def __init__(self, events: Generator[dict[str, Any], None, None]) -> None:
        self._events = events
        self._lock = threading.Lock()
        self._chunks = self._iterate()
        super().__init__(
            self._chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    def _step(self) -> bytes | None:
        with self._lock:
            item = next(self._events, None)
        return None if item is None else _sse_event(item)

    async def _iterate(self) -> AsyncGenerator[bytes, None]:
        while (chunk := await anyio.to_thread.run_sync(self._step)) is not None:
            yield chunk

    def _close(self) -> None:
        with self._lock:
            try:
                self._events.close()
            except Exception:
                log.exception("closing an answer stream failed")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._chunks.aclose()
                await anyio.to_thread.run_sync(self._close)


@router.post("/conversations/{conversation_id}/messages")
def post_message(
    conversation_id: str,
    body: MessageIn,
    request: Request,
    principal: CurrentPrincipal,
    platform: PlatformDep,
) -> Any:
    """Send a message; the answer comes with its sources and scores. With ``"stream": true``
    or ``Accept: text/event-stream`` the answer streams as server-sent events."""
    attachments = [a.model_dump() for a in body.attachments]
    if body.stream or "text/event-stream" in request.headers.get("accept", ""):
        events = platform.chat.stream(principal, conversation_id, body.text, attachments)
        return EventStream(events)
    result = platform.chat.send(principal, conversation_id, body.text, attachments)
    timing = ", ".join(f"{name};dur={ms:.3f}" for name, ms in result.timings.items())
    return JSONResponse(result.to_json(), headers={"Server-Timing": timing} if timing else None)


@router.post("/messages/{message_id}/feedback", status_code=201)
def feedback(
    message_id: str, body: FeedbackIn, principal: CurrentPrincipal, platform: PlatformDep
) -> dict[str, Any]:
    return platform.chat.feedback(principal, message_id, body.rating, body.comment)


@router.patch("/conversations/{conversation_id}")
def update_conversation(
    conversation_id: str,
    body: ConversationPatch,
    principal: CurrentPrincipal,
    platform: PlatformDep,
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    return platform.chat.update(principal, conversation_id, changes).to_json()


@router.get("/conversations/{conversation_id}")
def get_conversation(
    conversation_id: str, principal: CurrentPrincipal, platform: PlatformDep
) -> dict[str, Any]:
    # Counted before the lookup: probing ids that do not exist is enumeration too.
    platform.abuse.observe_access(principal, "conversation", conversation_id)
    conv = platform.chat.get(principal, conversation_id)
    platform.chat.require_read(principal, conv)
    return conv.to_json()


@router.get("/conversations/{conversation_id}/replay")
def replay(
    conversation_id: str, principal: CurrentPrincipal, platform: PlatformDep
) -> dict[str, Any]:
    """The conversation as recorded in the ledger, with sources as they were. Recorded as a
    transcript access. Each source's text is checked against the SHA-256 its answer's entry
    recorded: an altered one has ``integrity: "tampered"`` and no text, the replay lists it in
    ``tampered_sources`` and ``warnings``, and a ``ledger.tamper_detected`` event records it."""
    from chatledger.chat.replay import record_tampering

    platform.abuse.observe_access(principal, "conversation", conversation_id)
    conv = platform.chat.get(principal, conversation_id)
    require(principal, Permission.CONVERSATION_READ, "conversation", conversation_id)
    result = replay_conversation(platform.ledger, conv.id)
    platform.ledger.append(
        Event(
            "conversation.view",
            principal.actor,
            Entity("conversation", conv.id),
            attributes={
                "chatbot_id": conv.chatbot_id,
                "conversation_id": conv.id,
                "via": "replay",
            },
        )
    )
    record_tampering(platform.ledger, result, principal.actor, "replay")
    return result
