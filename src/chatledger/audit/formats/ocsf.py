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
- Web Resources Activity (6001): ``conversation.view``, ``analytics.view``, ``audit.*``,
  ``ledger.export``, ``ledger.verify``
- Detection Finding (2004): ``guard.*`` detections, ``access.denied``, ``request.rejected``,
  ``ledger.tamper_detected``

``type_uid`` is ``class_uid * 100 + activity_id``; ``time`` is milliseconds since the epoch;
``status_id`` is the outcome (Success 1, Failure 2; for findings the finding status New 1).
``unmapped.chatledger`` holds the seq, the payload status and the entry itself, byte for
byte as it is hashed into the ledger (``entry``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

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
    "analytics.view": (6001, 2, None),
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


@functools.lru_cache(maxsize=65536)
def _user_of(kind: str, ident: str, role: Any) -> dict[str, Any]:
    """An OCSF user object of an actor."""
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


_SERVICE = {"name": PRODUCT}


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

# -- rendering ---------------------------------------------------------------------------------
#
# An event is written as JSON text assembled from pieces, not as a dict handed to orjson.
# Most of an event depends only on its kind (action, outcome, severity) and the export's
# context, yet building it as a dozen small dicts per entry, then serializing them all, was
# most of the formatter's work in an export of a million entries (measured with callgrind:
# about 72,000 instructions per event; assembled from cached pieces, about 45,000). Every
# value is still serialized by orjson (``_json``; ``_members`` for the constant parts, once
# per kind); what is written here is only the joining of serialized members with ``,`` inside
# ``{}``, which no JSON library offers (``orjson.Fragment`` embeds a whole value, not
# members). Members come in the order the dict-based version had, so the bytes are the same
# as before; ``event`` parses a line back for the callers that want a dict.

_json = orjson.dumps
_json_cached = functools.lru_cache(maxsize=65536)(orjson.dumps)
"""For strings that repeat from entry to entry (timestamps, conversation and chatbot ids)."""


def _json_str(value: Any) -> bytes:
    return _json_cached(value) if value.__class__ is str else _json(value)


def _members(obj: dict[str, Any]) -> bytes:
    """The members of a JSON object, serialized by orjson, without the braces."""
    return orjson.dumps(obj)[1:-1]


class _Kind(NamedTuple):
    """The constant pieces of the events of one kind of entry."""

    class_uid: int
    lead: bytes
    """From ``{`` to ``"time":``."""
    after_time: bytes
    """From the severity to the metadata's ``"uid":``."""
    after_uid: bytes
    """The event code, up to ``"sequence":``."""
    log: bytes
    """The log name member."""
    status: bytes
    """The status members (after ``actor``)."""
    api: bytes
    """API Activity: ``api`` up to the request's ``"uid":``."""


@functools.lru_cache(maxsize=4096)
def _kind(
    action: str,
    outcome: str,
    given: str | None,
    category: str | None,
    version: str,
    log_name: str,
) -> _Kind:
    """The pieces of the events whose entries share these fields (``given`` is the entry's
    ``attributes.severity`` when a string, ``category`` its category when a string)."""
    static = _static(action)
    class_uid = static["class_uid"]
    severity_id = SEVERITY_ID[
        severity_of(
            {
                "action": action,
                "outcome": outcome,
                "category": category,
                "attributes": {"severity": given},
            }
        )
    ]
    after_time = (
        b","
        + _members(
            {
                "severity_id": severity_id,
                "severity": SEVERITY_CAPTION[severity_id],
                "message": f"{words(action)} ({outcome})",
            }
        )
        + b',"metadata":{'
        + _members({"version": OCSF_VERSION, "product": _product(version)})
        + b',"uid":'
    )
    if class_uid == 2004:
        status = b',"status_id":1,"status":"New","is_alert":true'
    else:
        found = _STATUS.get(outcome) or {
            "status_id": 2,
            "status": "Failure",
            "status_detail": outcome,
        }
        status = b"," + _members(found)
    api = b',"api":{' + _members({"operation": action, "service": _SERVICE}) + b',"request":{"uid":'
    return _Kind(
        class_uid,
        b"{" + _members(static) + b',"time":',
        after_time,
        b"," + _members({"event_code": action}) + b',"sequence":',
        b',"log_name":' + _json(log_name),
        status,
        api,
    )


@functools.lru_cache(maxsize=16)
def _product(version: str) -> dict[str, Any]:
    return {"name": PRODUCT, "vendor_name": VENDOR, "version": version}


@functools.lru_cache(maxsize=65536)
def _actor(kind: str, ident: str, role: Any) -> bytes:
    return b',"actor":{"user":' + _json(_user_of(kind, ident, role)) + b"}"


def _resources(entity: dict[str, Any], attrs: dict[str, Any], ident: bytes) -> bytes:
    """``resources``: the entity (``ident``, its id as JSON), then the conversation and the
    chatbot when they are other than the entity."""
    out = b',"resources":[{"uid":%b,"type":%b}' % (ident, _json_str(entity["type"]))
    uid = entity["id"]
    conversation = attrs.get("conversation_id")
    if conversation and conversation.__class__ is str and conversation != uid:
        out += b',{"uid":%b,"type":"conversation"}' % _json_cached(conversation)
    bot = attrs.get("chatbot_id")
    if bot and bot.__class__ is str and bot != uid:
        out += b',{"uid":%b,"type":"chatbot"}' % _json_cached(bot)
    return out + b"]"


_AI_ROLE_MEMBERS = {
    action: _members({"ai_role_id": role_id, "ai_role": role})
    for action, (role_id, role) in _AI_ROLES.items()
}
_SERVICE_MEMBER = b'"service":' + orjson.dumps(_SERVICE)


def _ai_fields(action: str, attrs: dict[str, Any]) -> bytes:
    """The ``ai_operation`` profile: ``ai_model`` and ``message_context`` (empty when the
    entry has neither)."""
    get = attrs.get
    model = get("gen_ai.response.model") or get("gen_ai.request.model")
    if model and model.__class__ is str:
        provider = get("gen_ai.provider.name") or get("gen_ai.system")
        if not (provider and provider.__class__ is str):
            provider = "unknown"
        out = b',"ai_model":{"name":%b,"ai_provider":%b}' % (
            _json_cached(model),
            _json_cached(provider),
        )
    else:
        out = b""
    context: list[bytes] = []
    conversation = get("gen_ai.conversation.id") or get("conversation_id")
    if conversation and conversation.__class__ is str:
        text = _json_cached(conversation)
        context.append(b'"uid":%b,"name":%b' % (text, text))
    role = _AI_ROLE_MEMBERS.get(action)
    if role is not None:
        context.append(role)
    prompt = get("gen_ai.usage.input_tokens")
    completion = get("gen_ai.usage.output_tokens")
    if prompt.__class__ is int:
        context.append(b'"prompt_tokens":%d' % prompt)
    else:
        prompt = None
    if completion.__class__ is int:
        context.append(b'"completion_tokens":%d' % completion)
        if prompt is not None:
            context.append(b'"total_tokens":%d' % (prompt + completion))
    if context:
        context.append(_SERVICE_MEMBER)
        out += b',"message_context":{%b}' % b",".join(context)
    return out


def _finding(e: dict[str, Any], action: str, attrs: dict[str, Any], time_ms: int) -> bytes:
    """``finding_info`` of a Detection Finding (few entries: a plain dict)."""
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
    return b',"finding_info":' + _json(finding)


_PROFILES = b',"profiles":["ai_operation"]'


def line(record: ExportRecord, ctx: FormatContext) -> bytes:
    """The OCSF event of one ledger entry as one line of JSON (UTF-8, ending in a newline)."""
    e = record.entry
    action = e["action"]
    actor = e["actor"]
    entity = e["entity"]
    attrs = e["attributes"]
    ts = e["ts"]
    time_ms = epoch_ms(ts)
    given = attrs.get("severity")
    category = e.get("category")
    kind = _kind(
        action,
        e["outcome"],
        given if isinstance(given, str) else None,
        category if isinstance(category, str) else None,
        ctx.product_version,
        ctx.origin or "chatledger",
    )
    class_uid = kind.class_uid
    seq = record.seq
    conversation = attrs.get("conversation_id")
    if conversation and conversation.__class__ is str:
        correlation = b',"correlation_uid":' + _json_cached(conversation)
    else:
        correlation = b""
    actor_user = _actor(str(actor.get("type", "")), str(actor.get("id", "")), actor.get("role"))
    if class_uid == 6003:  # most entries: messages, model calls, conversations
        ident = _json(entity["id"])
        ai = _ai_fields(action, attrs)
        channel = attrs.get("channel")
        tail = b'%b%b%b}},"src_endpoint":{"name":%b}%b%b' % (
            kind.status,
            kind.api,
            ident,
            _json_cached(channel) if channel and channel.__class__ is str else b'"chatledger"',
            _resources(entity, attrs, ident),
            ai,
        )
        if ai:
            correlation += _PROFILES
    elif class_uid == 2004:
        tail = _finding(e, action, attrs, time_ms) + kind.status
        tail += _resources(entity, attrs, _json(entity["id"]))
        score = attrs.get("score")
        if isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 1:
            tail += b',"confidence_score":%d' % round(score * 100)
    else:
        tail = kind.status
        if class_uid == 3002:
            user = _user_of(str(actor.get("type", "")), str(actor.get("id", "")), actor.get("role"))
            tail += b',"user":%b,"service":%b' % (_json(user), _json(_SERVICE))
            method = attrs.get("method")
            if method and isinstance(method, str):
                tail += b',"auth_protocol_id":99,"auth_protocol":' + _json(method)
        elif class_uid == 3001:
            tail += b',"user":' + _json(_target_user(entity))
        elif class_uid == 3004:
            tail += b',"entity":' + _json({"uid": entity["id"], "type": entity["type"]})
        elif class_uid == 6001:
            tail += b',"web_resources":' + _json([{"uid": entity["id"], "type": entity["type"]}])
    erasure = record.erasure_seq
    # The entry exactly as recorded (its canonical bytes, not re-encoded), so that a SIEM
    # keeps every field and can check the event against the ledger's proofs.
    return (
        b'%b%d%b%b%b%d,"original_time":%b,"logged_time":%d%b%b}%b%b'
        b',"unmapped":{"chatledger":{"seq":%d,"payload_status":%b,"entry":%b%b}}}\n'
        % (
            kind.lead,
            time_ms,
            kind.after_time,
            _json(e["id"]),
            kind.after_uid,
            seq,
            _json_str(ts),
            time_ms,
            kind.log,
            correlation,
            actor_user,
            tail,
            seq,
            _json_cached(record.payload_status),
            record.body,
            b"" if erasure is None else b',"erasure_seq":%d' % erasure,
        )
    )


def event(record: ExportRecord, ctx: FormatContext) -> dict[str, Any]:
    """The OCSF event of one ledger entry, as a dict (the line, parsed back; the entry stays
    its canonical bytes)."""
    out: dict[str, Any] = orjson.loads(line(record, ctx))
    out["unmapped"]["chatledger"]["entry"] = orjson.Fragment(record.body)
    return out


def render(record: ExportRecord, ctx: FormatContext) -> str:
    return line(record, ctx)[:-1].decode()


FORMAT = Format(
    name="ocsf",
    media_type="application/x-ndjson",
    extension="ocsf.jsonl",
    render=render,
    render_line=line,
    description="OCSF 1.8.0 events (JSON Lines)",
)
