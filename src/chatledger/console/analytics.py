"""The analytics page's data, from the analytics reports (chatledger.audit.analytics, which
reads the ledger, never the mutable tables), arranged per day for the charts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from chatledger.audit.analytics import AnalyticsQuery, run_report
from chatledger.ledger.entry import Entry
from chatledger.ledger.service import Ledger

TOP_ROWS = 10
STATUSES = ("resolved", "escalated", "abandoned", "open")
RATES = ("resolution_rate", "escalation_rate", "abandonment_rate", "tagged_rate")
MAX_SERIES = 6


@dataclass
class Analytics:
    days: list[str]
    query: AnalyticsQuery
    unanswered: list[tuple[str, int, list[str]]] = field(default_factory=list)
    feedback_topics: list[tuple[str, int, int]] = field(default_factory=list)
    feedback_documents: list[tuple[str, int, int]] = field(default_factory=list)
    conversations: list[tuple[str, list[int]]] = field(default_factory=list)
    """Per day: conversations started that day, by their status (STATUSES)."""
    rates: list[tuple[str, int, list[float | None]]] = field(default_factory=list)
    """Per day with conversations: how many, and the RATES."""
    outcome_tags: list[str] = field(default_factory=list)
    outcomes: list[tuple[str, list[int]]] = field(default_factory=list)
    security_kinds: list[str] = field(default_factory=list)
    security: list[tuple[str, list[int]]] = field(default_factory=list)
    truncated: bool = False


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def compute(
    ledger: Ledger,
    chatbot_ids: tuple[str, ...],
    days: int = 30,
    today: date | None = None,
    *,
    unscoped_visible: Callable[[Entry], bool] | None = None,
) -> Analytics:
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    day_list = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    query = AnalyticsQuery(
        chatbot_ids=chatbot_ids,
        start=first.isoformat(),
        include_unscoped=True,
        limit=TOP_ROWS,
        unscoped_visible=unscoped_visible,
    )
    result = Analytics(day_list, query)

    def report(name: str) -> list[dict[str, Any]]:
        found = run_report(ledger, name, query)
        result.truncated = result.truncated or found.truncated
        return found.rows

    result.unanswered = [
        (str(r["topic"]), _int(r["count"]), [str(q) for q in r.get("examples") or []][:3])
        for r in report("unanswered")[:TOP_ROWS]
    ]
    result.feedback_topics = [
        (str(r["topic"]), _int(r["positive"]), _int(r["negative"]))
        for r in report("feedback-topics")[:TOP_ROWS]
    ]
    result.feedback_documents = [
        (str(r.get("document_name") or r["document_id"]), _int(r["positive"]), _int(r["negative"]))
        for r in report("feedback-documents")[:TOP_ROWS]
    ]

    per_day = {str(r["day"]): r for r in report("outcomes")}
    tags: dict[str, int] = defaultdict(int)
    for row in per_day.values():
        for key, value in row.items():
            if key.startswith("tag:"):
                tags[key[4:]] += _int(value)
    result.outcome_tags = sorted(tags, key=lambda t: (-tags[t], t))[:MAX_SERIES]
    for day in day_list:
        row = per_day.get(day, {})
        result.conversations.append((day, [_int(row.get(s)) for s in STATUSES]))
        result.outcomes.append((day, [_int(row.get(f"tag:{t}")) for t in result.outcome_tags]))
        if _int(row.get("conversations")):
            result.rates.append(
                (day, _int(row["conversations"]), [row.get(rate) for rate in RATES])
            )

    counts: dict[tuple[str, str], int] = defaultdict(int)
    kinds: dict[str, int] = defaultdict(int)
    for row in report("security"):
        counts[(str(row["day"]), str(row["kind"]))] += _int(row["count"])
        kinds[str(row["kind"])] += _int(row["count"])
    result.security_kinds = sorted(kinds, key=lambda k: (-kinds[k], k))[:MAX_SERIES]
    result.security = [
        (day, [counts[(day, kind)] for kind in result.security_kinds]) for day in day_list
    ]
    return result
