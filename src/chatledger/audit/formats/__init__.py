"""Export formats for ledger entries: JSON Lines, CSV, OCSF 1.8, CEF, LEEF 2.0, ECS, Splunk HEC.

Every format renders an :class:`ExportRecord` (the entry as committed, plus the status of its
payload) into one line. Payload content is never exported: SIEMs get the envelope (who, what,
which entity, when, outcome, non-personal attributes), and investigators open a conversation
replay or an evidence pack for content. docs/siem.md documents each mapping.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from chatledger import __version__
from chatledger.errors import InvalidInput

PRODUCT = "ChatLedger"
VENDOR = "ChatLedger"


class ExportRecord:
    """One entry to export: its canonical bytes, its parsed form (parsed on first use) and
    the status of its payload."""

    __slots__ = ("_entry", "body", "erasure_seq", "payload_status", "seq")

    def __init__(
        self,
        seq: int,
        body: bytes,
        payload_status: str,
        erasure_seq: int | None = None,
        entry: dict[str, Any] | None = None,
    ) -> None:
        self.seq = seq
        self.body = body
        """The entry's canonical JSON, exactly as hashed into the ledger."""
        self.payload_status = payload_status
        """``present``, ``erased`` or ``none``."""
        self.erasure_seq = erasure_seq
        self._entry = entry

    @property
    def entry(self) -> dict[str, Any]:
        if self._entry is None:
            self._entry = orjson.loads(self.body)
        return self._entry

    def forget(self) -> None:
        """Drop the parsed form (``entry`` parses the bytes again if asked for)."""
        self._entry = None

    def __repr__(self) -> str:
        return f"ExportRecord(seq={self.seq}, payload_status={self.payload_status!r})"


@dataclass(frozen=True)
class FormatContext:
    origin: str = ""
    """The log's origin (checkpoint name), so a SIEM can tell ledgers apart."""
    product_version: str = __version__
    host: str = field(default_factory=socket.gethostname)
    source: str = "chatledger"
    sourcetype: str = "chatledger:audit"
    index: str | None = None


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    extension: str
    render: Callable[[ExportRecord, FormatContext], str]
    header: str = ""
    line_end: str = "\n"
    description: str = ""
    render_line: Callable[[ExportRecord, FormatContext], bytes] | None = None
    """One record's line with its ``line_end``, as UTF-8: the same bytes as ``render``, without
    the round trip through ``str`` (for the formats that have it)."""

    def lines(self, records: Sequence[ExportRecord], ctx: FormatContext) -> bytes:
        """The lines of ``records`` as UTF-8, each followed by ``line_end`` (what exports call).

        Each record's parsed entry is dropped as soon as its line is written (it is parsed
        again if asked for). Kept, the parsed entries of a whole batch pile up, the cycle
        collector promotes them and its full collections walk them again and again, over
        the whole heap of the process: that was about a quarter of a single-process export's
        CPU time."""
        one = self.render_line
        if one is None:
            render, end = self.render, self.line_end

            def one(record: ExportRecord, ctx: FormatContext) -> bytes:
                return (render(record, ctx) + end).encode()

        out = []
        for record in records:
            out.append(one(record, ctx))
            record.forget()
        return b"".join(out)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=4096)
def epoch_us(ts: str) -> int:
    """Microseconds since the epoch of a ledger timestamp (``...T..:..:..ffffffZ``)."""
    moment = datetime.fromisoformat(ts[:-1] + "+00:00" if ts.endswith("Z") else ts)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@functools.lru_cache(maxsize=4096)
def epoch_ms(ts: str) -> int:
    """Entries committed together share a timestamp, hence the cache."""
    return epoch_us(ts) // 1000


SEVERITIES = ("info", "low", "medium", "high", "critical")

_ACTION_SEVERITY = {
    "ledger.tamper_detected": "critical",
    "guard.request_blocked": "medium",
    "guard.rate_limited": "low",
    "guard.anomaly": "medium",
    "access.denied": "medium",
    "auth.login_failed": "low",
    "auth.lockout": "medium",
    "request.rejected": "low",
}


def severity_of(entry: dict[str, Any]) -> str:
    """A normalized severity: ``info``, ``low``, ``medium``, ``high`` or ``critical``.

    ``attributes.severity`` (set by the guard's detectors) wins; otherwise the action decides
    (injection detections are ``high`` when blocked, ``medium`` when only flagged)."""
    attrs = entry.get("attributes") or {}
    given = attrs.get("severity")
    outcome = entry.get("outcome")
    category = entry.get("category")
    # Only these four fields decide, and they take few distinct values: cached (an export
    # asks once per entry). A value that is not a string counts as absent, as it always did.
    return _severity(
        given if isinstance(given, str) else None,
        str(entry.get("action", "")),
        outcome if isinstance(outcome, str) else None,
        category if isinstance(category, str) else None,
    )


@functools.lru_cache(maxsize=4096)
def _severity(given: str | None, action: str, outcome: str | None, category: str | None) -> str:
    if given is not None and given.lower() in SEVERITIES:
        return given.lower()
    if action == "guard.injection_detected":
        return "high" if outcome == "blocked" else "medium"
    if action in _ACTION_SEVERITY:
        return _ACTION_SEVERITY[action]
    if category == "security":
        return "low"
    return "info"


@functools.lru_cache(maxsize=1024)
def words(action: str) -> str:
    """``message.user`` -> ``message user`` (a readable event name)."""
    return action.replace(".", " ").replace("_", " ")


@functools.cache
def _registry() -> dict[str, Format]:
    from chatledger.audit.formats import cef, csvfmt, ecs, jsonl, leef, ocsf, splunk

    formats = [
        jsonl.FORMAT,
        csvfmt.FORMAT,
        ocsf.FORMAT,
        cef.FORMAT,
        leef.FORMAT,
        ecs.FORMAT,
        splunk.FORMAT,
    ]
    return {f.name: f for f in formats}


FORMAT_NAMES = ("jsonl", "csv", "ocsf", "cef", "leef", "ecs", "splunk_hec")


def get_format(name: str) -> Format:
    formats = _registry()
    try:
        return formats[name]
    except KeyError:
        raise InvalidInput(
            f"unknown export format {name!r}: use one of {', '.join(FORMAT_NAMES)}",
            details={"format": str(name)[:50]},
        ) from None
