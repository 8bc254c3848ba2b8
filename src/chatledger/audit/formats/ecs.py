"""Elastic Common Schema (ECS 8.11) documents, one JSON object per line.

``@timestamp``, ``event.*`` (``id``, ``sequence``, ``action``, ``category``, ``type``, ``kind``,
``outcome``, ``severity`` 1-5, ``dataset``, ``module``, ``provider``), ``user.id`` and
``user.roles``, ``related.user``, ``labels`` (chatbot and conversation ids), ``gen_ai.*`` (the
entry's OpenTelemetry GenAI attributes, nested), ``observer``/``service``, and everything else
of the entry under the custom ``chatledger`` field set.
"""

from __future__ import annotations

from typing import Any

import orjson

from chatledger.audit.formats import (
    PRODUCT,
    VENDOR,
    ExportRecord,
    Format,
    FormatContext,
    severity_of,
    words,
)

ECS_VERSION = "8.11.0"
SEVERITY = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
LOG_LEVEL = {"info": "info", "low": "notice", "medium": "warning", "high": "error"}

_CATEGORY_BY_PREFIX: tuple[tuple[str, list[str]], ...] = (
    ("auth.", ["authentication"]),
    ("user.", ["iam"]),
    ("apikey.", ["iam"]),
    ("membership.", ["iam"]),
    ("workspace.", ["configuration"]),
    ("chatbot.", ["configuration"]),
    ("settings.", ["configuration"]),
    ("retention.", ["configuration"]),
    ("guard.policy_update", ["configuration"]),
    ("privacy.", ["configuration"]),
    ("document.", ["file"]),
    ("conversation.view", ["web"]),
    ("analytics.view", ["web"]),
    ("conversation.", ["session"]),
    ("message.", ["api"]),
    ("model.", ["api"]),
    ("integration.", ["api"]),
    ("audit.", ["web"]),
    ("ledger.tamper_detected", ["intrusion_detection"]),
    ("ledger.", ["configuration"]),
    ("guard.", ["intrusion_detection"]),
    ("access.denied", ["intrusion_detection"]),
    ("request.rejected", ["intrusion_detection"]),
)


def _categories(action: str) -> list[str]:
    return next((c for p, c in _CATEGORY_BY_PREFIX if action.startswith(p)), [])


def _types(action: str, outcome: str, categories: list[str]) -> list[str]:
    verb = action.rsplit(".", 1)[-1]
    if outcome in ("denied", "blocked"):
        kinds = ["denied"]
    elif verb in ("create", "upload", "start", "hold_placed", "checkpoint_published"):
        kinds = ["creation"]
    elif verb in ("delete", "revoke", "subject_erased", "retention_expired", "hold_released"):
        kinds = ["deletion"]
    elif verb in ("login", "login_failed", "token_use"):
        kinds = ["start"]
    elif verb in ("logout", "session_expired", "end"):
        kinds = ["end"]
    elif verb in ("view", "search", "export", "evidence"):
        kinds = ["access"]
    elif verb in ("update", "version", "role_change", "change", "policy_update", "resolution"):
        kinds = ["change"]
    elif "intrusion_detection" in categories:
        kinds = ["indicator"]
    else:
        kinds = ["info"]
    if "iam" in categories:
        kinds = ["user", *kinds] if kinds != ["info"] else ["user"]
    return kinds


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = value
    return out


def document(record: ExportRecord, ctx: FormatContext) -> dict[str, Any]:
    e = record.entry
    action = str(e.get("action", ""))
    outcome = str(e.get("outcome", ""))
    actor = e.get("actor") or {}
    entity = e.get("entity") or {}
    attrs = e.get("attributes") or {}
    severity = severity_of(e)
    categories = _categories(action)
    kind = "alert" if "intrusion_detection" in categories else "event"
    event: dict[str, Any] = {
        "id": e.get("id"),
        "sequence": record.seq,
        "action": action,
        "kind": kind,
        "outcome": {"success": "success", "flagged": "success"}.get(outcome, "failure"),
        "severity": SEVERITY[severity],
        "dataset": "chatledger.audit",
        "module": "chatledger",
        "provider": ctx.origin or "chatledger",
        "type": _types(action, outcome, categories),
    }
    if categories:
        event["category"] = categories
    user: dict[str, Any] = {"id": str(actor.get("id", ""))}
    if actor.get("role"):
        user["roles"] = [actor["role"]]
    doc: dict[str, Any] = {
        "@timestamp": e.get("ts"),
        "ecs": {"version": ECS_VERSION},
        "message": f"{words(action)} ({outcome})",
        "event": event,
        "log": {"level": LOG_LEVEL.get(severity, "critical")},
        "user": user,
        "related": {"user": [str(actor.get("id", ""))]},
        "observer": {"vendor": VENDOR, "product": PRODUCT, "version": ctx.product_version},
        "service": {"name": "chatledger", "version": ctx.product_version},
    }
    labels = {
        key: attrs[key]
        for key in ("chatbot_id", "conversation_id")
        if isinstance(attrs.get(key), str) and attrs[key]
    }
    if labels:
        doc["labels"] = labels
    gen_ai = {k: v for k, v in attrs.items() if k.startswith("gen_ai.")}
    if gen_ai:
        doc.update(_nest(gen_ai))
    chatledger: dict[str, Any] = {
        "seq": record.seq,
        "category": e.get("category"),
        "actor": actor,
        "entity": entity,
        "attributes": attrs,
        "payload_status": record.payload_status,
        "prev": e.get("prev"),
    }
    if e.get("subject") is not None:
        chatledger["subject"] = e["subject"]
    if record.erasure_seq is not None:
        chatledger["erasure_seq"] = record.erasure_seq
    doc["chatledger"] = chatledger
    return doc


def render(record: ExportRecord, ctx: FormatContext) -> str:
    return orjson.dumps(document(record, ctx)).decode()


FORMAT = Format(
    name="ecs",
    media_type="application/x-ndjson",
    extension="ecs.jsonl",
    render=render,
    description="Elastic Common Schema documents (JSON Lines)",
)
