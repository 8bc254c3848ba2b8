"""ArcSight Common Event Format (CEF:0), one event per line.

``CEF:0|ChatLedger|ChatLedger|<version>|<action>|<name>|<severity>|<extension>``

Escaping, as the CEF specification says:

- header fields: a backslash becomes ``\\\\`` and a pipe ``\\|``; a header cannot hold a line
  break, so CR and LF become a space;
- extension values: a backslash becomes ``\\\\``, an equal sign ``\\=``, a line feed ``\\n`` and
  a carriage return ``\\r`` (pipes need no escaping there);
- extension keys are fixed alphanumeric names from the CEF dictionary or ``cs``/``cn`` pairs.

Severity is 0-10 (info 1, low 3, medium 5, high 8, critical 10).
"""

from __future__ import annotations

import re
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

SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
MAX_CS = 4000
"""The longest custom string (``csN``) value the CEF dictionary allows."""


_VALUE_SPECIAL = re.compile(r"[\\=\r\n]")
_HEADER_SPECIAL = re.compile(r"[\\|\r\n]")


def escape_header(value: str) -> str:
    if _HEADER_SPECIAL.search(value) is None:
        return value
    return (
        value.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("\r\n", " ")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def escape_value(value: str) -> str:
    if _VALUE_SPECIAL.search(value) is None:
        return value
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def extension(record: ExportRecord, ctx: FormatContext) -> list[tuple[str, str]]:
    e = record.entry
    actor = e.get("actor") or {}
    entity = e.get("entity") or {}
    attrs = e.get("attributes") or {}
    pairs: list[tuple[str, str | None]] = [
        ("rt", str(epoch_ms(str(e.get("ts", ""))))),
        ("externalId", _text(e.get("id"))),
        ("cat", _text(e.get("category"))),
        ("act", _text(e.get("action"))),
        ("outcome", _text(e.get("outcome"))),
        ("suid", _text(actor.get("id"))),
        ("spriv", _text(actor.get("role"))),
        ("duid", _text(e.get("subject"))),
        ("cn1Label", "seq"),
        ("cn1", str(record.seq)),
        ("cs1Label", "entityType"),
        ("cs1", _text(entity.get("type"))),
        ("cs2Label", "entityId"),
        ("cs2", _text(entity.get("id"))),
        ("cs3Label", "chatbotId"),
        ("cs3", _text(attrs.get("chatbot_id"))),
        ("cs4Label", "conversationId"),
        ("cs4", _text(attrs.get("conversation_id"))),
        ("cs5Label", "payloadStatus"),
        ("cs5", record.payload_status),
        ("cs6Label", "attributes"),
        ("cs6", orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS).decode()[:MAX_CS]),
        ("deviceExternalId", ctx.origin or None),
        ("flexString1Label", "actorType"),
        ("flexString1", _text(actor.get("type"))),
    ]
    return [(k, v) for k, v in pairs if v is not None and v != ""]


def render(record: ExportRecord, ctx: FormatContext) -> str:
    e = record.entry
    action = str(e.get("action", ""))
    outcome = str(e.get("outcome", ""))
    name = words(action) if outcome == "success" else f"{words(action)} ({outcome})"
    header = [
        "CEF:0",
        escape_header(VENDOR),
        escape_header(PRODUCT),
        escape_header(ctx.product_version),
        escape_header(action),
        escape_header(name),
        str(SEVERITY[severity_of(e)]),
    ]
    ext = " ".join(f"{key}={escape_value(value)}" for key, value in extension(record, ctx))
    return "|".join(header) + "|" + ext


FORMAT = Format(
    name="cef",
    media_type="text/plain; charset=utf-8",
    extension="cef",
    render=render,
    description="ArcSight CEF:0 lines",
)
