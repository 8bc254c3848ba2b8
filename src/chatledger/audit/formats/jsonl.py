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


def render_line(record: ExportRecord, ctx: FormatContext) -> bytes:
    # The same bytes as ``render``, but the entry's bytes are copied as they are instead of
    # being decoded and encoded again (the statuses are plain ASCII words).
    erasure = record.erasure_seq
    return b'{"seq":%d,"entry":%b,"payload_status":"%b"%b}\n' % (
        record.seq,
        record.body,
        record.payload_status.encode(),
        b"" if erasure is None else b',"erasure_seq":%d' % erasure,
    )


FORMAT = Format(
    name="jsonl",
    media_type="application/x-ndjson",
    extension="jsonl",
    render=render,
    render_line=render_line,
    description="JSON Lines: each entry's canonical JSON and its payload status",
)
