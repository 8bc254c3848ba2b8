"""Export formats for ledger entries: JSON Lines, CSV, OCSF 1.8, CEF, LEEF 2.0, ECS, Splunk HEC.

Every format renders an :class:`ExportRecord` (the entry as committed, plus the status of its
payload) into one line. Payload content is never exported: SIEMs get the envelope (who, what,
which entity, when, outcome, non-personal attributes), and investigators open a conversation
replay or an evidence pack for content. docs/siem.md documents each mapping.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
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
    if isinstance(given, str) and given.lower() in SEVERITIES:
        return given.lower()
    action = str(entry.get("action", ""))
    if action == "guard.injection_detected":
        return "high" if entry.get("outcome") == "blocked" else "medium"
    if action in _ACTION_SEVERITY:
        return _ACTION_SEVERITY[action]
    if entry.get("category") == "security":
        return "low"
    return "info"


@functools.lru_cache(maxsize=1024)
def words(action: str) -> str:
    """``message.user`` -> ``message user`` (a readable event name)."""
    return action.replace(".", " ").replace("_", " ")


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
