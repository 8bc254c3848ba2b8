"""JSON Lines: one object per entry, ``{"seq", "entry", "payload_status"[, "erasure_seq"]}``.

``entry`` is the entry's canonical JSON exactly as hashed (RFC 8785), so an exported line can
be checked against the ledger's proofs byte for byte.
"""

from __future__ import annotations

from chatledger.audit.formats import ExportRecord, Format, FormatContext


def render(record: ExportRecord, ctx: FormatContext) -> str:
    tail = f',"erasure_seq":{record.erasure_seq}' if record.erasure_seq is not None else ""
    return (
        f'{{"seq":{record.seq},"entry":{record.body.decode()},'
        f'"payload_status":"{record.payload_status}"{tail}}}'
    )


FORMAT = Format(
    name="jsonl",
    media_type="application/x-ndjson",
    extension="jsonl",
    render=render,
    description="JSON Lines: each entry's canonical JSON and its payload status",
)
