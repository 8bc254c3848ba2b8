"""OCSF 1.8.0 events, one JSON object per line.

Class by action (docs/siem.md has the full table):

- Authentication (3002): ``auth.*``
- Account Change (3001): ``user.*``, ``apikey.*``, ``membership.*``
- Entity Management (3004): ``chatbot.*``, ``document.*``, ``settings.*``, ``retention.*``,
  ``workspace.*``, ``guard.policy_update`` (a configuration change, not a detection),
  ``privacy.*`` and ``ledger.checkpoint_published``
- API Activity (6003) with the ``ai_operation`` profile: ``model.call``, ``message.*``,
  ``conversation.*`` (but ``conversation.view``), ``integration.span``, ``custom.*``
  (``ai_model``, ``message_context`` with token counts, when the entry has them)
- Web Resources Activity (6001): ``conversation.view``, ``audit.*``, ``ledger.export``,
  ``ledger.verify``
- Detection Finding (2004): ``guard.*`` detections, ``access.denied``, ``request.rejected``,
  ``ledger.tamper_detected``

``type_uid`` is ``class_uid * 100 + activity_id``; ``time`` is milliseconds since the epoch;
``status_id`` is the outcome (Success 1, Failure 2; for findings the finding status New 1).
``unmapped.chatledger`` holds the seq, the payload status and the entry itself, byte for
byte as it is hashed into the ledger (``entry``).
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from chatledger.audit.formats import (
    PRODUCT,
    VENDOR,
    ExportRecord,
    Format,
    FormatContext,
    epoch_ms,
    severity_of,
    words,
)

OCSF_VERSION = "1.8.0"

SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_CAPTION = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}

_CLASSES: dict[int, tuple[str, int, str]] = {
    3001: ("Account Change", 3, "Identity & Access Management"),
    3002: ("Authentication", 3, "Identity & Access Management"),
    3004: ("Entity Management", 3, "Identity & Access Management"),
    6001: ("Web Resources Activity", 6, "Application Activity"),
    6003: ("API Activity", 6, "Application Activity"),
    2004: ("Detection Finding", 2, "Findings"),
}

_ACTIVITY_CAPTIONS: dict[int, dict[int, str]] = {
    3001: {1: "Create", 2: "Enable", 5: "Disable", 6: "Delete"},
    3002: {1: "Logon", 2: "Logoff"},
    3004: {1: "Create", 2: "Read", 3: "Update", 4: "Delete"},
    6001: {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 5: "Search", 7: "Export"},
    6003: {1: "Create", 2: "Read", 3: "Update", 4: "Delete"},
    2004: {1: "Create", 2: "Update", 3: "Close"},
}

# action -> (class_uid, activity_id, caption when activity_id is 99 Other)
_EXACT: dict[str, tuple[int, int, str | None]] = {
    "auth.login": (3002, 1, None),
    "auth.login_failed": (3002, 1, None),
    "auth.token_use": (3002, 1, None),
    "auth.logout": (3002, 2, None),
    "auth.session_expired": (3002, 2, None),
    "auth.lockout": (3002, 99, "Lockout"),
    "user.create": (3001, 1, None),
    "user.update": (3001, 99, "Update"),
    "user.role_change": (3001, 99, "Role Change"),
    "apikey.create": (3001, 1, None),
    "apikey.revoke": (3001, 5, None),
    "membership.change": (3001, 99, "Membership Change"),
    "workspace.create": (3004, 1, None),
    "chatbot.create": (3004, 1, None),
    "chatbot.update": (3004, 3, None),
    "chatbot.delete": (3004, 4, None),
    "document.upload": (3004, 1, None),
    "document.version": (3004, 3, None),
    "document.delete": (3004, 4, None),
    "document.reject": (3004, 99, "Reject"),
    "settings.update": (3004, 3, None),
    "retention.update": (3004, 3, None),
    "guard.policy_update": (3004, 3, None),
    "privacy.subject_erased": (3004, 4, None),
    "privacy.retention_expired": (3004, 4, None),
    "privacy.hold_placed": (3004, 1, None),
    "privacy.hold_released": (3004, 4, None),
    "ledger.checkpoint_published": (3004, 1, None),
    "conversation.view": (6001, 2, None),
    "audit.search": (6001, 5, None),
    "audit.export": (6001, 7, None),
    "audit.evidence": (6001, 7, None),
    "ledger.export": (6001, 7, None),
    "ledger.verify": (6001, 2, None),
    "model.call": (6003, 1, None),
    "message.user": (6003, 1, None),
    "message.answer": (6003, 1, None),
    "message.answer_failed": (6003, 1, None),
    "message.feedback": (6003, 1, None),
    "message.retrieval": (6003, 2, None),
    "message.unanswered": (6003, 99, "Unanswered"),
    "conversation.start": (6003, 1, None),
    "conversation.end": (6003, 3, None),
    "conversation.resolution": (6003, 3, None),
    "conversation.outcome": (6003, 3, None),
    "integration.span": (6003, 1, None),
    "access.denied": (2004, 1, None),
    "request.rejected": (2004, 1, None),
    "ledger.tamper_detected": (2004, 1, None),
}

_PREFIXES: tuple[tuple[str, int], ...] = (
    ("auth.", 3002),
    ("user.", 3001),
    ("apikey.", 3001),
    ("membership.", 3001),
    ("chatbot.", 3004),
    ("document.", 3004),
    ("settings.", 3004),
    ("retention.", 3004),
    ("workspace.", 3004),
    ("privacy.", 3004),
    ("guard.", 2004),
    ("audit.", 6001),
    ("message.", 6003),
    ("model.", 6003),
)


def classify(action: str) -> tuple[int, int, str]:
    """(class_uid, activity_id, activity_name) of an action."""
    found = _EXACT.get(action)
    if found is not None:
        class_uid, activity_id, other = found
    else:
        class_uid = next((c for p, c in _PREFIXES if action.startswith(p)), 6003)
        activity_id, other = (1, None) if class_uid == 2004 else (99, words(action).title())
    name = other if activity_id == 99 and other else _ACTIVITY_CAPTIONS[class_uid][activity_id]
    return class_uid, activity_id, name


_AI_ROLES = {
    "message.user": (1, "User"),
    "message.feedback": (1, "User"),
    "message.answer": (2, "Assistant"),
    "message.answer_failed": (2, "Assistant"),
    "message.unanswered": (2, "Assistant"),
    "model.call": (2, "Assistant"),
    "message.retrieval": (6, "Retriever"),
}


def _user(actor: dict[str, Any]) -> dict[str, Any]:
    """An OCSF user object of an actor (shared between events: treat it as read-only)."""
    return _user_of(str(actor.get("type", "")), str(actor.get("id", "")), actor.get("role"))


@functools.lru_cache(maxsize=65536)
def _user_of(kind: str, ident: str, role: Any) -> dict[str, Any]:
    if kind == "user":
        type_id, caption = (2, "Admin") if role in ("owner", "admin") else (1, "User")
    elif kind == "system":
        type_id, caption = 3, "System"
    else:
        type_id, caption = (
            99,
            {"api_key": "API Key", "anonymous": "Anonymous"}.get(kind, kind.title() or "Other"),
        )
    return {"uid": ident, "type_id": type_id, "type": caption}


def _target_user(entity: dict[str, Any]) -> dict[str, Any]:
    kind = str(entity.get("type", ""))
    if kind == "user":
        return {"uid": str(entity.get("id", "")), "type_id": 1, "type": "User"}
    return {"uid": str(entity.get("id", "")), "type_id": 99, "type": kind.replace("_", " ").title()}


def _resources(entity: dict[str, Any], attrs: dict[str, Any]) -> list[dict[str, Any]]:
    ident = entity["id"]
    out = [{"uid": ident, "type": entity["type"]}]
    conversation = attrs.get("conversation_id")
    if conversation and conversation.__class__ is str and conversation != ident:
        out.append({"uid": conversation, "type": "conversation"})
    bot = attrs.get("chatbot_id")
    if bot and bot.__class__ is str and bot != ident:
        out.append({"uid": bot, "type": "chatbot"})
    return out


_SERVICE = {"name": PRODUCT}


def _ai_fields(action: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """The ``ai_operation`` profile: ``ai_model`` and ``message_context``."""
    out: dict[str, Any] = {}
    get = attrs.get
    model = get("gen_ai.response.model") or get("gen_ai.request.model")
    if model and model.__class__ is str:
        provider = get("gen_ai.provider.name") or get("gen_ai.system")
        out["ai_model"] = {
            "name": model,
            "ai_provider": provider if provider and provider.__class__ is str else "unknown",
        }
    context: dict[str, Any] = {}
    conversation = get("gen_ai.conversation.id") or get("conversation_id")
    if conversation and conversation.__class__ is str:
        context["uid"] = conversation
        context["name"] = conversation
    role = _AI_ROLES.get(action)
    if role is not None:
        context["ai_role_id"], context["ai_role"] = role
    prompt = get("gen_ai.usage.input_tokens")
    completion = get("gen_ai.usage.output_tokens")
    prompt = prompt if prompt.__class__ is int else None
    completion = completion if completion.__class__ is int else None
    if prompt is not None:
        context["prompt_tokens"] = prompt
    if completion is not None:
        context["completion_tokens"] = completion
        if prompt is not None:
            context["total_tokens"] = prompt + completion
    if context:
        context["service"] = _SERVICE
        out["message_context"] = context
    return out


@functools.lru_cache(maxsize=16)
def _product(version: str) -> dict[str, Any]:
    return {"name": PRODUCT, "vendor_name": VENDOR, "version": version}


@functools.lru_cache(maxsize=1024)
def _static(action: str) -> dict[str, Any]:
    """The parts of an event that depend on the action alone (computed once per action)."""
    class_uid, activity_id, activity_name = classify(action)
    class_name, category_uid, category_name = _CLASSES[class_uid]
    return {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
    }


_STATUS = {
    "success": {"status_id": 1, "status": "Success"},
    "flagged": {"status_id": 1, "status": "Success", "status_detail": "flagged"},
}


def event(record: ExportRecord, ctx: FormatContext) -> dict[str, Any]:
    """The OCSF event of one ledger entry."""
    e = record.entry
    action = e["action"]
    outcome = e["outcome"]
    actor = e["actor"]
    entity = e["entity"]
    attrs = e["attributes"]
    ts = e["ts"]
    entity_ref = {"uid": entity["id"], "type": entity["type"]}
    time_ms = epoch_ms(ts)
    out = dict(_static(action))
    class_uid = out["class_uid"]
    severity_id = SEVERITY_ID[severity_of(e)]
    metadata: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": _product(ctx.product_version),
        "uid": e["id"],
        "event_code": action,
        "sequence": record.seq,
        "original_time": ts,
        "logged_time": time_ms,
        "log_name": ctx.origin or "chatledger",
    }
    conversation = attrs.get("conversation_id")
    if conversation and isinstance(conversation, str):
        metadata["correlation_uid"] = conversation
    out["time"] = time_ms
    out["severity_id"] = severity_id
    out["severity"] = SEVERITY_CAPTION[severity_id]
    out["message"] = f"{words(action)} ({outcome})"
    out["metadata"] = metadata
    out["actor"] = {"user": _user(actor)}
    if class_uid == 2004:
        analytic: dict[str, Any] = {
            "name": str(attrs.get("detector") or action),
            "type_id": 1,
            "type": "Rule",
        }
        version = attrs.get("detector_version")
        if isinstance(version, str | int | float) and not isinstance(version, bool):
            analytic["version"] = str(version)
        finding: dict[str, Any] = {
            "uid": e["id"],
            "title": words(action).capitalize(),
            "types": [action],
            "analytic": analytic,
            "created_time": time_ms,
        }
        reason = attrs.get("reason") or attrs.get("kind")
        if isinstance(reason, str) and reason:
            finding["desc"] = reason
        out["finding_info"] = finding
        out["status_id"] = 1
        out["status"] = "New"
        out["is_alert"] = True
        out["resources"] = _resources(entity, attrs)
        score = attrs.get("score")
        if isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 1:
            out["confidence_score"] = round(score * 100)
    else:
        out.update(
            _STATUS.get(outcome) or {"status_id": 2, "status": "Failure", "status_detail": outcome}
        )
        if class_uid == 6003:
            out["api"] = {
                "operation": action,
                "service": _SERVICE,
                "request": {"uid": entity["id"]},
            }
            channel = attrs.get("channel")
            out["src_endpoint"] = {
                "name": channel if channel and isinstance(channel, str) else "chatledger"
            }
            out["resources"] = _resources(entity, attrs)
            ai = _ai_fields(action, attrs)
            if ai:
                out.update(ai)
                metadata["profiles"] = ["ai_operation"]
        elif class_uid == 3002:
            out["user"] = out["actor"]["user"]
            out["service"] = {"name": PRODUCT}
            method = attrs.get("method")
            if method and isinstance(method, str):
                out["auth_protocol_id"] = 99
                out["auth_protocol"] = method
        elif class_uid == 3001:
            out["user"] = _target_user(entity)
        elif class_uid == 3004:
            out["entity"] = entity_ref
        elif class_uid == 6001:
            out["web_resources"] = [entity_ref]
    # The entry exactly as recorded (its canonical bytes, not re-encoded), so that a SIEM
    # keeps every field and can check the event against the ledger's proofs.
    unmapped: dict[str, Any] = {
        "seq": record.seq,
        "payload_status": record.payload_status,
        "entry": orjson.Fragment(record.body),
    }
    if record.erasure_seq is not None:
        unmapped["erasure_seq"] = record.erasure_seq
    out["unmapped"] = {"chatledger": unmapped}
    return out


def render(record: ExportRecord, ctx: FormatContext) -> str:
    return orjson.dumps(event(record, ctx)).decode()


FORMAT = Format(
    name="ocsf",
    media_type="application/x-ndjson",
    extension="ocsf.jsonl",
    render=render,
    description="OCSF 1.8.0 events (JSON Lines)",
)
