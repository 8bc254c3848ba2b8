"""CSV (RFC 4180): one row per entry, a header row, CRLF line ends, UTF-8.

Values are written exactly as recorded (an audit export must not alter them): a spreadsheet
that evaluates cells starting with ``=``, ``+``, ``-`` or ``@`` should import the file as text.
"""

from __future__ import annotations

import csv
import io

import orjson

from chatledger.audit.formats import ExportRecord, Format, FormatContext

COLUMNS = (
    "seq",
    "ts",
    "id",
    "category",
    "action",
    "outcome",
    "actor_type",
    "actor_id",
    "actor_role",
    "entity_type",
    "entity_id",
    "chatbot_id",
    "conversation_id",
    "subject",
    "payload_status",
    "erasure_seq",
    "attributes",
    "prev",
)


def _row(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def render(record: ExportRecord, ctx: FormatContext) -> str:
    e = record.entry
    actor = e.get("actor") or {}
    entity = e.get("entity") or {}
    attrs = e.get("attributes") or {}
    return _row(
        [
            str(record.seq),
            _text(e.get("ts")),
            _text(e.get("id")),
            _text(e.get("category")),
            _text(e.get("action")),
            _text(e.get("outcome")),
            _text(actor.get("type")),
            _text(actor.get("id")),
            _text(actor.get("role")),
            _text(entity.get("type")),
            _text(entity.get("id")),
            _text(attrs.get("chatbot_id")),
            _text(attrs.get("conversation_id")),
            _text(e.get("subject")),
            record.payload_status,
            _text(record.erasure_seq),
            orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS).decode(),
            _text(e.get("prev")),
        ]
    )


FORMAT = Format(
    name="csv",
    media_type="text/csv; charset=utf-8",
    extension="csv",
    render=render,
    header=_row(list(COLUMNS)),
    line_end="\r\n",
    description="CSV with a header row; attributes as a JSON cell",
)
