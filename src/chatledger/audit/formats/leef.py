"""IBM QRadar Log Event Extended Format, LEEF 2.0, one event per line.

``LEEF:2.0|ChatLedger|ChatLedger|<version>|<action>|x09|key=value<TAB>key=value...``

The sixth header field names the attribute delimiter: ``x09``, the tab, as a hex value (LEEF
2.0 allows a single character or ``x``/``0x`` followed by 1-4 hex digits). LEEF defines no
escape sequences: header fields and attribute values must not contain the delimiter, and a
header field no pipe. Our header fields come from a closed set (product names, version and
action names, which cannot hold ``|``, tabs or line breaks); in attribute values a tab, CR or
LF becomes a space (an ``=`` or ``|`` inside a value is allowed: a value runs from the first
``=`` after its key to the next delimiter). ``devTime`` carries milliseconds, with
``devTimeFormat`` in Java SimpleDateFormat syntax, as LEEF requires; ``sev`` is 1-10.
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
    severity_of,
)

DELIMITER = "\t"
DELIMITER_FIELD = "x09"
DEV_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSX"
SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}

_HEADER_BAD = str.maketrans({"|": "_", "\t": "_", "\r": "_", "\n": "_"})
_VALUE_BAD = str.maketrans({"\t": " ", "\r": " ", "\n": " "})


def header_field(value: str) -> str:
    return value.translate(_HEADER_BAD)


_VALUE_SPECIAL = re.compile(r"[\t\r\n]")


def clean_value(value: str) -> str:
    if _VALUE_SPECIAL.search(value) is None:
        return value
    return value.translate(_VALUE_BAD)


def dev_time(ts: str) -> str:
    """``2026-11-28T14:47:19.123456Z`` -> ``2026-11-28T14:47:19.123Z`` (milliseconds)."""
    if len(ts) >= 24 and ts.endswith("Z") and ts[19] == ".":
        return ts[:23] + "Z"
    return ts


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def attributes(record: ExportRecord, ctx: FormatContext) -> list[tuple[str, str]]:
    e = record.entry
    actor = e.get("actor") or {}
    entity = e.get("entity") or {}
    attrs = e.get("attributes") or {}
    pairs: list[tuple[str, str | None]] = [
        ("devTime", dev_time(str(e.get("ts", "")))),
        ("devTimeFormat", DEV_TIME_FORMAT),
        ("cat", _text(e.get("category"))),
        ("sev", str(SEVERITY[severity_of(e)])),
        ("usrName", _text(actor.get("id"))),
        ("actorType", _text(actor.get("type"))),
        ("role", _text(actor.get("role"))),
        ("action", _text(e.get("action"))),
        ("outcome", _text(e.get("outcome"))),
        ("entityType", _text(entity.get("type"))),
        ("entityId", _text(entity.get("id"))),
        ("chatbotId", _text(attrs.get("chatbot_id"))),
        ("conversationId", _text(attrs.get("conversation_id"))),
        ("subject", _text(e.get("subject"))),
        ("seq", str(record.seq)),
        ("eventUid", _text(e.get("id"))),
        ("payloadStatus", record.payload_status),
        ("attributes", orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS).decode()),
        ("origin", ctx.origin or None),
    ]
    return [(k, v) for k, v in pairs if v is not None and v != ""]


def render(record: ExportRecord, ctx: FormatContext) -> str:
    action = str(record.entry.get("action", ""))
    header = [
        "LEEF:2.0",
        header_field(VENDOR),
        header_field(PRODUCT),
        header_field(ctx.product_version),
        header_field(action),
        DELIMITER_FIELD,
    ]
    body = DELIMITER.join(f"{k}={clean_value(v)}" for k, v in attributes(record, ctx))
    return "|".join(header) + "|" + body


FORMAT = Format(
    name="leef",
    media_type="text/plain; charset=utf-8",
    extension="leef",
    render=render,
    description="IBM QRadar LEEF 2.0 lines, tab-delimited attributes",
)
