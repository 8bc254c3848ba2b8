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

import functools
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
    """The extension's (key, value) pairs, unescaped, empty values left out."""
    pairs = zip(_KEYS, _values(record, ctx), strict=True)
    return [(k[:-1], v) for k, v in ((k, _text(v)) for k, v in pairs) if v]


_KEYS = (
    "rt=",
    "externalId=",
    "cat=",
    "act=",
    "outcome=",
    "suid=",
    "spriv=",
    "duid=",
    "cn1Label=",
    "cn1=",
    "cs1Label=",
    "cs1=",
    "cs2Label=",
    "cs2=",
    "cs3Label=",
    "cs3=",
    "cs4Label=",
    "cs4=",
    "cs5Label=",
    "cs5=",
    "cs6Label=",
    "cs6=",
    "deviceExternalId=",
    "flexString1Label=",
    "flexString1=",
)


def _labelled(label: str, value: Any) -> tuple[str | None, Any]:
    """A custom field's label and value: both left out when there is no value."""
    return (None, None) if value is None or value == "" else (label, value)


def _values(record: ExportRecord, ctx: FormatContext) -> tuple[Any, ...]:
    """The value of each of ``_KEYS``, as recorded (None: left out)."""
    e = record.entry
    actor = e.get("actor") or {}
    entity = e.get("entity") or {}
    attrs = e.get("attributes") or {}
    return (
        str(epoch_ms(str(e.get("ts", "")))),
        e.get("id"),
        e.get("category"),
        e.get("action"),
        e.get("outcome"),
        actor.get("id"),
        actor.get("role"),
        e.get("subject"),
        *_labelled("seq", record.seq),
        *_labelled("entityType", entity.get("type")),
        *_labelled("entityId", entity.get("id")),
        *_labelled("chatbotId", attrs.get("chatbot_id")),
        *_labelled("conversationId", attrs.get("conversation_id")),
        *_labelled("payloadStatus", record.payload_status),
        "attributes",
        orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS).decode()[:MAX_CS],
        ctx.origin or None,
        *_labelled("actorType", actor.get("type")),
    )


@functools.lru_cache(maxsize=4096)
def _header(version: str, action: str, outcome: str, severity: str) -> str:
    """The seven header fields and the bar before the extension (once per kind of entry)."""
    name = words(action) if outcome == "success" else f"{words(action)} ({outcome})"
    fields = [
        "CEF:0",
        escape_header(VENDOR),
        escape_header(PRODUCT),
        escape_header(version),
        escape_header(action),
        escape_header(name),
        str(SEVERITY[severity]),
    ]
    return "|".join(fields) + "|"


_NEEDS_ESCAPE = re.compile(r"[\\\r\n]")


def render(record: ExportRecord, ctx: FormatContext) -> str:
    e = record.entry
    head = _header(
        ctx.product_version, str(e.get("action", "")), str(e.get("outcome", "")), severity_of(e)
    )
    parts = []
    for key, value in zip(_KEYS, _values(record, ctx), strict=True):
        if value is None:
            continue
        if value.__class__ is not str:
            value = str(value)
        if value:
            parts.append(key + value)
    ext = " ".join(parts)
    # Almost no value needs escaping: one look at the whole extension tells (each part holds
    # exactly one "=", its key's, unless a value holds one too).
    if ext.count("=") != len(parts) or _NEEDS_ESCAPE.search(ext) is not None:
        ext = " ".join(f"{key}={escape_value(value)}" for key, value in extension(record, ctx))
    return head + ext


def render_line(record: ExportRecord, ctx: FormatContext) -> bytes:
    return (render(record, ctx) + "\n").encode()


FORMAT = Format(
    name="cef",
    media_type="text/plain; charset=utf-8",
    extension="cef",
    render=render,
    render_line=render_line,
    description="ArcSight CEF:0 lines",
)
