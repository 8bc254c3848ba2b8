"""The event vocabulary: every action the platform records, grouped by category.

The vocabulary is closed: an action outside it is refused, except ``custom.*`` actions,
which scripts and integrations may use freely (their category is ``custom``).
Field names inside ``attributes`` follow the OpenTelemetry GenAI conventions where one
exists (``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chatledger.errors import InvalidInput


class Category(StrEnum):
    CONVERSATION = "conversation"
    MESSAGE = "message"
    DOCUMENT = "document"
    CONFIGURATION = "configuration"
    ACCESS = "access"
    SECURITY = "security"
    PRIVACY = "privacy"
    INTEGRATION = "integration"
    CUSTOM = "custom"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"
    BLOCKED = "blocked"
    FLAGGED = "flagged"


_C = Category
ACTIONS: dict[str, Category] = {
    # conversation level
    "conversation.start": _C.CONVERSATION,
    "conversation.end": _C.CONVERSATION,
    "conversation.resolution": _C.CONVERSATION,
    "conversation.outcome": _C.CONVERSATION,
    # messages, answers, model calls, retrieval, feedback
    "message.user": _C.MESSAGE,
    "message.answer": _C.MESSAGE,
    "message.answer_failed": _C.MESSAGE,
    "message.retrieval": _C.MESSAGE,
    "message.feedback": _C.MESSAGE,
    "message.unanswered": _C.MESSAGE,
    "model.call": _C.MESSAGE,
    # documents
    "document.upload": _C.DOCUMENT,
    "document.version": _C.DOCUMENT,
    "document.delete": _C.DOCUMENT,
    "document.reject": _C.DOCUMENT,
    # configuration
    "workspace.create": _C.CONFIGURATION,
    "chatbot.create": _C.CONFIGURATION,
    "chatbot.update": _C.CONFIGURATION,
    "chatbot.delete": _C.CONFIGURATION,
    "settings.update": _C.CONFIGURATION,
    "retention.update": _C.CONFIGURATION,
    "guard.policy_update": _C.CONFIGURATION,
    # access
    "auth.login": _C.ACCESS,
    "auth.logout": _C.ACCESS,
    "auth.token_use": _C.ACCESS,
    "auth.session_expired": _C.ACCESS,
    "apikey.create": _C.ACCESS,
    "apikey.revoke": _C.ACCESS,
    "user.create": _C.ACCESS,
    "user.update": _C.ACCESS,
    "user.role_change": _C.ACCESS,
    "membership.change": _C.ACCESS,
    "conversation.view": _C.ACCESS,
    "analytics.view": _C.ACCESS,
    "audit.search": _C.ACCESS,
    "audit.export": _C.ACCESS,
    "audit.evidence": _C.ACCESS,
    "ledger.export": _C.ACCESS,
    "ledger.verify": _C.ACCESS,
    # security
    "auth.login_failed": _C.SECURITY,
    "auth.lockout": _C.SECURITY,
    "access.denied": _C.SECURITY,
    "guard.injection_detected": _C.SECURITY,
    "guard.request_blocked": _C.SECURITY,
    "guard.rate_limited": _C.SECURITY,
    "guard.anomaly": _C.SECURITY,
    "request.rejected": _C.SECURITY,
    "ledger.tamper_detected": _C.SECURITY,
    # privacy and the ledger's own housekeeping
    "privacy.subject_erased": _C.PRIVACY,
    "privacy.retention_expired": _C.PRIVACY,
    "privacy.hold_placed": _C.PRIVACY,
    "privacy.hold_released": _C.PRIVACY,
    "ledger.checkpoint_published": _C.PRIVACY,
    # records sent by chatbots built elsewhere
    "integration.span": _C.INTEGRATION,
}

ACTOR_TYPES = frozenset({"user", "api_key", "system", "anonymous", "service"})
_OUTCOMES = frozenset(o.value for o in Outcome)
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_][a-z0-9_-]*)+$")
_MAX_ID = 200


def category_of(action: str) -> Category:
    """The category of ``action``; refuses actions outside the vocabulary."""
    known = ACTIONS.get(action) if isinstance(action, str) else None
    if known is not None:
        return known
    if not isinstance(action, str) or not _ACTION_RE.match(action) or len(action) > 100:
        raise InvalidInput(
            "action must be a dotted lower-case name such as 'document.upload'",
            details={"action": str(action)[:100]},
        )
    if action.startswith("custom."):
        return Category.CUSTOM
    try:
        return ACTIONS[action]
    except KeyError:
        raise InvalidInput(
            f"unknown action {action!r}: use one of the vocabulary or a 'custom.' prefix",
            details={"action": action},
        ) from None


def _ident(value: Any, what: str, *, optional: bool = False) -> str | None:
    # The common case first: short printable ASCII (no control characters, encodes as is).
    if type(value) is str and 0 < len(value) <= _MAX_ID and value.isascii() and value.isprintable():
        return value
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_ID:
        raise InvalidInput(f"{what} must be a non-empty string of at most {_MAX_ID} characters")
    if not value.isprintable() and any(ord(ch) < 0x20 for ch in value):
        raise InvalidInput(f"{what} must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid Unicode text") from None
    return value


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: a user, an API key, the system, an anonymous visitor session, a service."""

    type: str
    id: str
    role: str | None = None

    def __post_init__(self) -> None:
        if self.type not in ACTOR_TYPES:
            raise InvalidInput(
                f"actor.type must be one of {', '.join(sorted(ACTOR_TYPES))}",
                details={"actor.type": str(self.type)[:50]},
            )
        _ident(self.id, "actor.id")
        _ident(self.role, "actor.role", optional=True)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "id": self.id}
        if self.role is not None:
            out["role"] = self.role
        return out

    @classmethod
    def from_json(cls, data: Any) -> Actor:
        if not isinstance(data, dict):
            raise InvalidInput("actor must be an object with type and id")
        return cls(type=data.get("type"), id=data.get("id"), role=data.get("role"))  # type: ignore[arg-type]


SYSTEM = Actor("system", "chatledger")


@dataclass(frozen=True, slots=True)
class Entity:
    """Which thing the action was on (document, chatbot, conversation, message, user, ...)."""

    type: str
    id: str

    def __post_init__(self) -> None:
        _ident(self.type, "entity.type")
        _ident(self.id, "entity.id")

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id}

    @classmethod
    def from_json(cls, data: Any) -> Entity:
        if not isinstance(data, dict):
            raise InvalidInput("entity must be an object with type and id")
        return cls(type=data.get("type"), id=data.get("id"))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Event:
    """An event as a caller submits it, before the ledger seals and sequences it.

    ``attributes`` are non-personal facts kept in the clear inside the hashed entry (ids,
    model names, token counts, scores, hashes). ``payload`` is personal or bulky content
    (message text, before/after values, emails, IPs): it is stored encrypted under the data
    subject's key and committed to by a keyed digest, so it can be erased later.
    """

    action: str
    actor: Actor
    entity: Entity
    outcome: str = Outcome.SUCCESS
    subject: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    payload: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        category_of(self.action)
        if not isinstance(self.actor, Actor) or not isinstance(self.entity, Entity):
            raise InvalidInput("actor and entity must be given")
        if not isinstance(self.outcome, str) or self.outcome not in _OUTCOMES:
            raise InvalidInput(
                f"outcome must be one of {', '.join(o.value for o in Outcome)}",
                details={"outcome": str(self.outcome)[:50]},
            )
        _ident(self.subject, "subject", optional=True)
        if not isinstance(self.attributes, dict):
            raise InvalidInput("attributes must be an object")
        if self.payload is not None and not isinstance(self.payload, dict):
            raise InvalidInput("payload must be an object")

    @property
    def category(self) -> Category:
        return category_of(self.action)

    @classmethod
    def from_json(cls, data: Any) -> Event:
        """Build an event from the JSON shape of ``chatledger ledger append``."""
        if not isinstance(data, dict):
            raise InvalidInput("an event must be a JSON object")
        for key in ("action", "actor", "entity"):
            if key not in data:
                raise InvalidInput(f"event is missing {key!r}")
        allowed = {"action", "actor", "entity", "outcome", "subject", "attributes", "payload"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise InvalidInput(f"unknown event field {unknown[0]!r}")
        return cls(
            action=data["action"],
            actor=Actor.from_json(data["actor"]),
            entity=Entity.from_json(data["entity"]),
            outcome=data.get("outcome", Outcome.SUCCESS),
            subject=data.get("subject"),
            attributes=data.get("attributes") or {},
            payload=data.get("payload"),
        )
