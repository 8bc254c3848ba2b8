"""The seam between the chat path and the security guard (implemented in chatledger.guard)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from chatledger.chatbots.service import Chatbot
from chatledger.events import Event
from chatledger.identity.principal import Principal
from chatledger.rag.retrieval import Hit


@dataclass
class Screening:
    """What the guard decided about one input: block or not, and what to record."""

    blocked: bool = False
    warned: bool = False
    events: list[Event] = field(default_factory=list)
    verdict: dict[str, Any] | None = None


class ChatGuard(Protocol):
    def screen_message(
        self, principal: Principal, bot: Chatbot, conversation_id: str, subject: str, text: str
    ) -> Screening: ...

    def screen_hits(
        self, principal: Principal, bot: Chatbot, conversation_id: str, hits: list[Hit]
    ) -> tuple[list[Hit], list[Event]]: ...
