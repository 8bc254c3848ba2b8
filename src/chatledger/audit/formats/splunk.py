"""Splunk HTTP Event Collector events, one JSON object per line (the body HEC's
``/services/collector/event`` endpoint takes: events concatenated, no array).

``{"time": <epoch seconds, millisecond decimals>, "host", "source", "sourcetype"[, "index"],
"fields": {action, category, outcome}, "event": {"seq", "entry", "payload_status"}}``
"""

from __future__ import annotations

from typing import Any

import orjson

from chatledger.audit.formats import ExportRecord, Format, FormatContext, epoch_ms


def event(record: ExportRecord, ctx: FormatContext) -> dict[str, Any]:
    e = record.entry
    body: dict[str, Any] = {
        "seq": record.seq,
        "entry": e,
        "payload_status": record.payload_status,
    }
    if record.erasure_seq is not None:
        body["erasure_seq"] = record.erasure_seq
    if ctx.origin:
        body["origin"] = ctx.origin
    out: dict[str, Any] = {
        "time": round(epoch_ms(str(e.get("ts", ""))) / 1000, 3),
        "host": ctx.host,
        "source": ctx.source,
        "sourcetype": ctx.sourcetype,
        "fields": {
            "action": e.get("action"),
            "category": e.get("category"),
            "outcome": e.get("outcome"),
        },
        "event": body,
    }
    if ctx.index:
        out["index"] = ctx.index
    return out


def render(record: ExportRecord, ctx: FormatContext) -> str:
    return orjson.dumps(event(record, ctx)).decode()


FORMAT = Format(
    name="splunk_hec",
    media_type="application/x-ndjson",
    extension="hec.jsonl",
    render=render,
    description="Splunk HTTP Event Collector events",
)
