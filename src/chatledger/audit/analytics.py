"""Analytics computed from the ledger (never from the mutable tables): unanswered questions
grouped by topic, feedback by topic and by document, resolution and outcome rates per day,
most cited documents, documents never cited, security events per day by kind.

Every report is a flat table (``columns`` and ``rows``) so that it reads the same as JSON and
as CSV; some carry extra detail in JSON only.

Topics are found without any model: each question becomes a TF-IDF vector of its content
words (lower-cased, stemmed, stop words and filler dropped), and questions are grouped in
ledger order by a single-pass leader clustering (a question joins the most similar topic when
the cosine similarity to the topic's centroid is at least 0.3, else it starts a new topic). The
result is deterministic for the same questions. A topic is named by its three heaviest words.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from chatledger.chat.replay import document_names
from chatledger.errors import InvalidInput
from chatledger.events import Actor, Entity, Event
from chatledger.ledger.entry import Entry
from chatledger.ledger.service import Ledger
from chatledger.privacy.retention import parse_time, seq_at_time
from chatledger.rag.offline import QUESTION_FILLER
from chatledger.rag.tokens import STOP_WORDS, stem, words

MAX_ROWS = 200_000
SIMILARITY = 0.3
ERASED_TOPIC = "(erased)"
OTHER_TOPIC = "(no content words)"
RESOLUTIONS = ("resolved", "escalated", "abandoned")
MAX_FILLED_DAYS = 3660


@dataclass(frozen=True)
class AnalyticsQuery:
    """Which part of the ledger a report covers. ``chatbot_ids`` None means every chatbot;
    ``include_unscoped`` keeps entries that belong to no chatbot (security events such as
    failed logins)."""

    chatbot_ids: tuple[str, ...] | None = None
    start: str | None = None
    end: str | None = None
    include_unscoped: bool = True
    limit: int = 50
    unscoped_visible: Callable[[Entry], bool] | None = field(default=None, compare=False)
    """Which entries of no chatbot the caller may see (on a deployment with several
    workspaces: those by, about or naming its own; see chatledger.console.queries.Scope)."""

    def bounds(self, ledger: Ledger) -> tuple[int, int]:
        lo = seq_at_time(ledger.store, parse_time(self.start)) if self.start else 0
        hi = (
            seq_at_time(ledger.store, parse_time(self.end, end=True), after=True)
            if self.end
            else ledger.size()
        )
        return lo, hi

    def to_json(self) -> dict[str, Any]:
        return {
            "chatbot_ids": list(self.chatbot_ids) if self.chatbot_ids is not None else None,
            "from": parse_time(self.start) if self.start else None,
            "to": parse_time(self.end, end=True) if self.end else None,
        }


@dataclass
class Report:
    name: str
    columns: list[str]
    rows: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False

    def to_json(self, query: AnalyticsQuery | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "report": self.name,
            "columns": self.columns,
            "items": self.rows,
            "truncated": self.truncated,
            **self.extra,
        }
        if query is not None:
            out["filters"] = query.to_json()
        return out

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in self.columns})
        return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        value = " | ".join(str(v) for v in value)
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int | float):
        return value
    text = str(value)
    # Spreadsheet formula injection: a cell must not start with = + - @ (OWASP).
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


# -- reading the ledger ------------------------------------------------------------------------


class _Reader:
    def __init__(self, ledger: Ledger, query: AnalyticsQuery) -> None:
        self.ledger = ledger
        self.query = query
        self.lo, self.hi = query.bounds(ledger)
        self.truncated = False

    def _scope_sql(self, *, unscoped: bool) -> tuple[str, list[Any]]:
        ids = self.query.chatbot_ids
        if ids is None:
            return "", []
        if not ids:
            return (" AND chatbot_id IS NULL", []) if unscoped else (" AND 1 = 0", [])
        marks = ",".join("?" * len(ids))
        clause = f"chatbot_id IN ({marks})"
        if unscoped:
            clause = f"({clause} OR chatbot_id IS NULL)"
        return f" AND {clause}", list(ids)

    def scan(
        self,
        actions: Sequence[str] = (),
        *,
        category: str | None = None,
        unscoped: bool = False,
        whole_log: bool = False,
    ) -> list[Entry]:
        """Entries of these actions (or this category) in the time range and chatbot scope."""
        where = ["seq >= ?", "seq < ?"]
        params: list[Any] = [0 if whole_log else self.lo, self.hi]
        if actions:
            where.append(f"action IN ({','.join('?' * len(actions))})")
            params += list(actions)
        if category:
            where.append("category = ?")
            params.append(category)
        scope, scope_params = self._scope_sql(unscoped=unscoped)
        rows = self.ledger.store.query(
            f"SELECT seq, body FROM ledger_entries WHERE {' AND '.join(where)}{scope} "
            "ORDER BY seq LIMIT ?",
            [*params, *scope_params, MAX_ROWS + 1],
        )
        if len(rows) > MAX_ROWS:
            self.truncated = True
            rows = rows[:MAX_ROWS]
        entries = [Entry.parse(bytes(body), int(seq)) for seq, body in rows]
        visible = self.query.unscoped_visible
        if unscoped and visible is not None:
            entries = [
                e for e in entries if isinstance(e.attributes.get("chatbot_id"), str) or visible(e)
            ]
        return entries

    def by_entity(self, action: str, ids: Iterable[str]) -> dict[str, Entry]:
        """The entries of ``action`` on these entity ids (messages), by entity id."""
        wanted = sorted(set(ids))
        found: dict[str, Entry] = {}
        for i in range(0, len(wanted), 400):
            part = wanted[i : i + 400]
            marks = ",".join("?" * len(part))
            for seq, body in self.ledger.store.query(
                f"SELECT seq, body FROM ledger_entries WHERE entity_type = 'message' AND "
                f"entity_id IN ({marks}) AND action = ? ORDER BY seq",
                [*part, action],
            ):
                entry = Entry.parse(bytes(body), int(seq))
                found[str(entry.entity.get("id"))] = entry
        return found

    def by_conversation(self, actions: Sequence[str], ids: Iterable[str]) -> list[Entry]:
        wanted = sorted(set(ids))
        out: list[Entry] = []
        marks_a = ",".join("?" * len(actions))
        for i in range(0, len(wanted), 400):
            part = wanted[i : i + 400]
            marks = ",".join("?" * len(part))
            for seq, body in self.ledger.store.query(
                f"SELECT seq, body FROM ledger_entries WHERE conversation_id IN ({marks}) AND "
                f"action IN ({marks_a}) AND seq < ? ORDER BY seq",
                [*part, *actions, self.hi],
            ):
                out.append(Entry.parse(bytes(body), int(seq)))
        out.sort(key=lambda e: e.seq)
        return out

    def text(self, entry: Entry | None) -> str | None:
        """A message's text from its payload; None if erased or missing."""
        if entry is None:
            return None
        record = self.ledger.read(entry.seq)
        if record.payload is None:
            return None
        value = record.payload.get("text")
        return value if isinstance(value, str) else None

    def names(self, document_ids: Iterable[str]) -> dict[str, str]:
        """The latest name of each document."""
        latest: dict[str, tuple[int, str]] = {}
        for (doc, version), name in document_names(self.ledger, sorted(set(document_ids))).items():
            if doc not in latest or version > latest[doc][0]:
                latest[doc] = (version, name)
        return {doc: name for doc, (_, name) in latest.items()}


# -- topics ------------------------------------------------------------------------------------


def _terms(text: str) -> list[tuple[str, str]]:
    """(stem, surface word) of the content words of a question."""
    out = []
    for word in words(text):
        if len(word) < 3 or word.isdigit() or word in STOP_WORDS:
            continue
        root = stem(word)
        if root in QUESTION_FILLER or word in QUESTION_FILLER:
            continue
        out.append((root, word))
    return out


@dataclass
class Topics:
    assignment: list[int]
    """The topic index of each text."""
    labels: list[str]
    sizes: list[int]


def cluster_topics(texts: Sequence[str | None], threshold: float = SIMILARITY) -> Topics:
    """Group texts by topic (see the module docstring); erased texts (None) form one topic."""
    terms = [_terms(t) if t is not None else [] for t in texts]
    df: Counter[str] = Counter()
    for item in terms:
        df.update({root for root, _ in item})
    n = max(1, sum(1 for t in texts if t is not None))
    surface: dict[str, Counter[str]] = defaultdict(Counter)
    vectors: list[dict[str, float]] = []
    for item in terms:
        tf = Counter(root for root, _ in item)
        for root, word in item:
            surface[root][word] += 1
        vec = {
            root: count * (math.log((1 + n) / (1 + df[root])) + 1.0) for root, count in tf.items()
        }
        norm = math.sqrt(sum(v * v for v in vec.values()))
        vectors.append({k: v / norm for k, v in vec.items()} if norm else {})
    centroids: list[dict[str, float]] = []
    special: dict[str, int] = {}
    labels: list[str] = []
    sizes: list[int] = []
    assignment: list[int] = []
    for text, vec in zip(texts, vectors, strict=True):
        if not vec:
            name = ERASED_TOPIC if text is None else OTHER_TOPIC
            if name not in special:
                special[name] = len(labels)
                labels.append(name)
                sizes.append(0)
                centroids.append({})
            index = special[name]
        else:
            best, best_score = -1, 0.0
            for i, centroid in enumerate(centroids):
                if not centroid:
                    continue
                norm = math.sqrt(sum(v * v for v in centroid.values()))
                score = sum(w * centroid.get(k, 0.0) for k, w in vec.items()) / norm
                if score > best_score:
                    best, best_score = i, score
            if best >= 0 and best_score >= threshold:
                index = best
                for k, w in vec.items():
                    centroids[index][k] = centroids[index].get(k, 0.0) + w
            else:
                index = len(labels)
                labels.append("")
                sizes.append(0)
                centroids.append(dict(vec))
        sizes[index] += 1
        assignment.append(index)
    for i, centroid in enumerate(centroids):
        if centroid:
            top = sorted(centroid.items(), key=lambda kv: (-round(kv[1], 9), kv[0]))[:3]
            labels[i] = " ".join(surface[root].most_common(1)[0][0] for root, _ in top)
    return Topics(assignment, labels, sizes)


def _ordered_topics(topics: Topics) -> tuple[list[int], dict[int, str]]:
    """Topic indexes by size (largest first, then name), and their stable ids t1, t2, ..."""
    order = sorted(range(len(topics.labels)), key=lambda i: (-topics.sizes[i], topics.labels[i]))
    return order, {index: f"t{rank}" for rank, index in enumerate(order, start=1)}


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


# -- reports -----------------------------------------------------------------------------------


def unanswered_by_topic(ledger: Ledger, query: AnalyticsQuery) -> Report:
    reader = _Reader(ledger, query)
    events = reader.scan(["message.unanswered"])
    questions = reader.by_entity(
        "message.user", (str(e.attributes.get("message_id")) for e in events)
    )
    texts = [reader.text(questions.get(str(e.attributes.get("message_id")))) for e in events]
    topics = cluster_topics(texts)
    order, ids = _ordered_topics(topics)
    members: dict[int, list[int]] = defaultdict(list)
    for i, topic in enumerate(topics.assignment):
        members[topic].append(i)
    rows = []
    for index in order:
        items = members[index]
        examples: list[str] = []
        for i in items:
            text = texts[i]
            if text is not None and text not in examples and len(examples) < 3:
                examples.append(text)
        rows.append(
            {
                "topic_id": ids[index],
                "topic": topics.labels[index],
                "count": len(items),
                "share": _ratio(len(items), len(events)),
                "first_ts": events[items[0]].ts,
                "last_ts": events[items[-1]].ts,
                "examples": examples,
            }
        )
    detail = [
        {
            "seq": e.seq,
            "ts": e.ts,
            "chatbot_id": e.attributes.get("chatbot_id"),
            "conversation_id": e.attributes.get("conversation_id"),
            "message_id": e.attributes.get("message_id"),
            "topic_id": ids[topics.assignment[i]],
            "question": texts[i],
            "erased": texts[i] is None,
        }
        for i, e in enumerate(events)
    ]
    return Report(
        "unanswered",
        ["topic_id", "topic", "count", "share", "first_ts", "last_ts", "examples"],
        rows,
        {"total": len(events), "questions": detail[-1000:]},
        reader.truncated,
    )


@dataclass
class _Rated:
    feedback: Entry
    answer: Entry | None
    question: str | None


def _rated_answers(reader: _Reader) -> list[_Rated]:
    feedback = reader.scan(["message.feedback"])
    answers = reader.by_entity(
        "message.answer", (str(f.attributes.get("message_id")) for f in feedback)
    )
    asked = reader.by_entity(
        "message.user", (str(a.attributes.get("in_reply_to")) for a in answers.values())
    )
    texts: dict[str, str | None] = {}
    out = []
    for f in feedback:
        answer = answers.get(str(f.attributes.get("message_id")))
        question_id = str(answer.attributes.get("in_reply_to")) if answer else ""
        if question_id not in texts:
            texts[question_id] = reader.text(asked.get(question_id))
        out.append(_Rated(f, answer, texts[question_id]))
    return out


def _tally(rated: Iterable[_Rated]) -> tuple[int, int]:
    items = list(rated)
    positive = sum(1 for r in items if r.feedback.attributes.get("rating") == "positive")
    negative = sum(1 for r in items if r.feedback.attributes.get("rating") == "negative")
    return positive, negative


_FEEDBACK_COLUMNS = ["positive", "negative", "total", "positive_ratio", "negative_ratio"]


def _feedback_cells(positive: int, negative: int) -> dict[str, Any]:
    total = positive + negative
    return {
        "positive": positive,
        "negative": negative,
        "total": total,
        "positive_ratio": _ratio(positive, total),
        "negative_ratio": _ratio(negative, total),
    }


def feedback_by_topic(ledger: Ledger, query: AnalyticsQuery) -> Report:
    reader = _Reader(ledger, query)
    rated = _rated_answers(reader)
    topics = cluster_topics([r.question for r in rated])
    order, ids = _ordered_topics(topics)
    groups: dict[int, list[_Rated]] = defaultdict(list)
    for r, topic in zip(rated, topics.assignment, strict=True):
        groups[topic].append(r)
    rows = []
    for index in order:
        examples: list[str] = []
        for r in groups[index]:
            if r.question is not None and r.question not in examples and len(examples) < 3:
                examples.append(r.question)
        rows.append(
            {
                "topic_id": ids[index],
                "topic": topics.labels[index],
                **_feedback_cells(*_tally(groups[index])),
                "examples": examples,
            }
        )
    return Report(
        "feedback-topics",
        ["topic_id", "topic", *_FEEDBACK_COLUMNS, "examples"],
        rows,
        {"total": _feedback_cells(*_tally(rated))},
        reader.truncated,
    )


def _cited(answer: Entry) -> set[str]:
    return {
        str(item.get("document_id"))
        for item in answer.attributes.get("retrieved", []) or []
        if isinstance(item, dict) and item.get("cited")
    }


def feedback_by_document(ledger: Ledger, query: AnalyticsQuery) -> Report:
    """Feedback on answers, counted once for each document the answer cited."""
    reader = _Reader(ledger, query)
    rated = _rated_answers(reader)
    groups: dict[str, list[_Rated]] = defaultdict(list)
    uncited: list[_Rated] = []
    for r in rated:
        docs = _cited(r.answer) if r.answer else set()
        if not docs:
            uncited.append(r)
        for doc in docs:
            groups[doc].append(r)
    names = reader.names(groups)
    rows = [
        {"document_id": doc, "document_name": names.get(doc), **_feedback_cells(*_tally(items))}
        for doc, items in groups.items()
    ]
    rows.sort(
        key=lambda r: (-r["total"], -(r["negative"]), str(r["document_name"]), r["document_id"])
    )
    return Report(
        "feedback-documents",
        ["document_id", "document_name", *_FEEDBACK_COLUMNS],
        rows,
        {
            "total": _feedback_cells(*_tally(rated)),
            "without_citations": _feedback_cells(*_tally(uncited)),
        },
        reader.truncated,
    )


def _days_between(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    if (end - start).days > MAX_FILLED_DAYS:
        return []
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def outcomes_over_time(ledger: Ledger, query: AnalyticsQuery) -> Report:
    """Per day of conversation start: how many started, how they stand now (or at the end of
    the range): resolved, escalated, abandoned, still open; and their outcome tags."""
    reader = _Reader(ledger, query)
    starts = reader.scan(["conversation.start"])
    day_of = {str(e.attributes.get("conversation_id")): e.ts[:10] for e in starts}
    resolution: dict[str, str] = {}
    tags: dict[str, list[str]] = {}
    for e in reader.by_conversation(
        ["conversation.resolution", "conversation.outcome"], day_of.keys()
    ):
        cid = str(e.attributes.get("conversation_id"))
        if e.action == "conversation.resolution":
            resolution[cid] = str(e.attributes.get("resolution"))
        else:
            tags[cid] = [str(t) for t in e.attributes.get("tags", []) or []]
    all_tags = sorted({t for values in tags.values() for t in values})
    per_day: dict[str, Counter[str]] = defaultdict(Counter)
    for cid, day in day_of.items():
        counts = per_day[day]
        counts["conversations"] += 1
        counts[resolution.get(cid, "open")] += 1
        if tags.get(cid):
            counts["tagged"] += 1
        for tag in tags.get(cid, []):
            counts[f"tag:{tag}"] += 1
    days = sorted(per_day)
    if days:
        days = _days_between(days[0], days[-1]) or days
    rows = []
    for day in days:
        c = per_day.get(day, Counter())
        n = c["conversations"]
        row: dict[str, Any] = {
            "day": day,
            "conversations": n,
            **{r: c[r] for r in (*RESOLUTIONS, "open")},
            "resolution_rate": _ratio(c["resolved"], n),
            "escalation_rate": _ratio(c["escalated"], n),
            "abandonment_rate": _ratio(c["abandoned"], n),
            "tagged": c["tagged"],
            "tagged_rate": _ratio(c["tagged"], n),
        }
        for tag in all_tags:
            row[f"tag:{tag}"] = c[f"tag:{tag}"]
            row[f"tag_rate:{tag}"] = _ratio(c[f"tag:{tag}"], n)
        rows.append(row)
    columns = [
        "day",
        "conversations",
        *RESOLUTIONS,
        "open",
        "resolution_rate",
        "escalation_rate",
        "abandonment_rate",
        "tagged",
        "tagged_rate",
    ]
    for tag in all_tags:
        columns += [f"tag:{tag}", f"tag_rate:{tag}"]
    total = len(day_of)
    summary = Counter(resolution.get(cid, "open") for cid in day_of)
    return Report(
        "outcomes",
        columns,
        rows,
        {
            "total": {
                "conversations": total,
                **{r: summary[r] for r in (*RESOLUTIONS, "open")},
                "resolution_rate": _ratio(summary["resolved"], total),
                "outcome_tags": {t: sum(t in v for v in tags.values()) for t in all_tags},
            }
        },
        reader.truncated,
    )


def _citations(reader: _Reader) -> tuple[dict[str, dict[str, Any]], int]:
    answers = reader.scan(["message.answer"])
    found: dict[str, dict[str, Any]] = {}
    for answer in answers:
        retrieved = {
            str(i.get("document_id"))
            for i in answer.attributes.get("retrieved", []) or []
            if isinstance(i, dict)
        }
        cited = _cited(answer)
        for doc in retrieved | cited:
            item = found.setdefault(
                doc,
                {
                    "document_id": doc,
                    "chatbot_id": answer.attributes.get("chatbot_id"),
                    "citations": 0,
                    "retrievals": 0,
                    "last_cited": None,
                },
            )
            item["retrievals"] += doc in retrieved
            if doc in cited:
                item["citations"] += 1
                item["last_cited"] = answer.ts
    return found, len(answers)


def cited_documents(ledger: Ledger, query: AnalyticsQuery) -> Report:
    """Documents by how many answers cited them (and how many retrieved them)."""
    reader = _Reader(ledger, query)
    found, answers = _citations(reader)
    names = reader.names(found)
    rows = [
        {
            **item,
            "document_name": names.get(doc),
            "citation_share": _ratio(item["citations"], answers),
        }
        for doc, item in found.items()
        if item["citations"]
    ]
    rows.sort(key=lambda r: (-r["citations"], -r["retrievals"], str(r["document_name"])))
    return Report(
        "cited-documents",
        [
            "document_id",
            "document_name",
            "chatbot_id",
            "citations",
            "citation_share",
            "retrievals",
            "last_cited",
        ],
        rows[: query.limit],
        {"answers": answers, "documents_cited": len(rows)},
        reader.truncated,
    )


def uncited_documents(ledger: Ledger, query: AnalyticsQuery) -> Report:
    """Documents that exist (uploaded, not deleted, by the end of the range) and that no
    answer in the range cited."""
    reader = _Reader(ledger, query)
    found, answers = _citations(reader)
    current: dict[str, dict[str, Any]] = {}
    for e in reader.scan(
        ["document.upload", "document.version", "document.delete"], whole_log=True
    ):
        a = e.attributes
        doc = str(a.get("document_id"))
        if e.action == "document.delete":
            current.pop(doc, None)
            continue
        item = current.setdefault(
            doc,
            {
                "document_id": doc,
                "chatbot_id": a.get("chatbot_id"),
                "uploaded_at": e.ts,
            },
        )
        item.update(document_name=a.get("name"), version=a.get("version"), updated_at=e.ts)
    rows = [
        {**item, "retrievals": found.get(doc, {}).get("retrievals", 0)}
        for doc, item in current.items()
        if not found.get(doc, {}).get("citations")
    ]
    rows.sort(key=lambda r: (str(r["chatbot_id"]), str(r["document_name"]), r["document_id"]))
    return Report(
        "uncited-documents",
        [
            "document_id",
            "document_name",
            "chatbot_id",
            "version",
            "uploaded_at",
            "updated_at",
            "retrievals",
        ],
        rows,
        {"answers": answers, "documents": len(current)},
        reader.truncated,
    )


def security_over_time(ledger: Ledger, query: AnalyticsQuery) -> Report:
    """Security events per day and kind (action), with their outcomes."""
    reader = _Reader(ledger, query)
    events = reader.scan(category="security", unscoped=query.include_unscoped)
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for e in events:
        c = counts[(e.ts[:10], e.action)]
        c["count"] += 1
        c[e.outcome] += 1
    kinds = Counter(e.action for e in events)
    rows = [
        {
            "day": day,
            "kind": kind,
            "count": c["count"],
            "denied": c["denied"],
            "blocked": c["blocked"],
            "flagged": c["flagged"],
            "other": c["count"] - c["denied"] - c["blocked"] - c["flagged"],
        }
        for (day, kind), c in sorted(counts.items())
    ]
    return Report(
        "security",
        ["day", "kind", "count", "denied", "blocked", "flagged", "other"],
        rows,
        {"total": len(events), "by_kind": dict(sorted(kinds.items()))},
        reader.truncated,
    )


REPORTS: dict[str, Callable[[Ledger, AnalyticsQuery], Report]] = {
    "unanswered": unanswered_by_topic,
    "feedback-topics": feedback_by_topic,
    "feedback-documents": feedback_by_document,
    "outcomes": outcomes_over_time,
    "cited-documents": cited_documents,
    "uncited-documents": uncited_documents,
    "security": security_over_time,
}
DESCRIPTIONS: dict[str, str] = {
    "unanswered": "Unanswered questions grouped by topic.",
    "feedback-topics": "Feedback on answers (positive/negative) by topic of the question.",
    "feedback-documents": "Feedback on answers by the documents they cited.",
    "outcomes": "Per day: conversations, resolution and escalation rates, outcome tags.",
    "cited-documents": "The most cited documents.",
    "uncited-documents": "Documents that no answer cited.",
    "security": "Security events per day by kind.",
}


def run_report(ledger: Ledger, name: str, query: AnalyticsQuery) -> Report:
    try:
        report = REPORTS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown report {name!r}: use one of {', '.join(REPORTS)}",
            details={"report": name[:50]},
        ) from None
    if not 1 <= query.limit <= 10_000:
        raise InvalidInput("limit must be between 1 and 10000")
    return report(ledger, query)


def record_view(
    ledger: Ledger,
    actor: Actor,
    name: str,
    rows: int,
    query: AnalyticsQuery,
    *,
    via: str,
    workspace_id: str | None = None,
) -> None:
    """Record that a report was read (before it is shown: no record, no report). Reports
    quote visitors' questions and feedback comments, so reading one is a read of personal
    content, like a replay."""
    chatbots = query.chatbot_ids
    attributes: dict[str, Any] = {
        "report": name,
        "via": via,
        "scope": query.to_json(),
        "rows": rows,
    }
    if chatbots is not None and len(chatbots) == 1:
        attributes["chatbot_id"] = chatbots[0]
    if workspace_id is not None:
        attributes["workspace_id"] = workspace_id
    ledger.append(
        Event("analytics.view", actor, Entity("analytics_report", name), attributes=attributes)
    )
