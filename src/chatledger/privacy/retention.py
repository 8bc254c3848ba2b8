"""Retention: how long personal content is kept, per event category and per chatbot, and the
expiry job that erases payloads past their time.

Expiry erases **payloads, never ledger entries**: the payload row is deleted under an
erasure record that names a ``privacy.retention_expired`` event (the ledger's append-only
rules allow nothing else), so the log still verifies and a reader sees "erased, when, by which
seq". Legal holds suspend expiry of what they cover.

Rules (``days`` = keep for this many days after the event; ``None`` = keep forever):

* one rule per event category (``security``, ``access``, ``message``, ``conversation``, ...):
  the whole payload of an event of that category expires;
* ``ip``: visitor IP addresses. The digest an entry commits to covers its whole payload, so
  an IP cannot be cut out of a payload and the rest still be checked against the digest.
  IP expiry therefore erases the **whole payload** of the access, security and conversation
  events whose payload carries an ``ip`` (for ``conversation.start`` this takes the user
  agent and the visitor/user id in the payload with it; the conversation keeps its subject
  pseudonym, so erasure and evidence by subject keep working).

Policies resolve per chatbot: a chatbot's own policy, else its workspace's policy for all
its chatbots (scope ``ws:<workspace id>``, what a workspace's admins set over the API), else
the deployment's policy (scope ``*``, set by the operator with the CLI), else the built-in
default. Entries with no chatbot (logins, audit reads) use the deployment's scope. A
workspace's admins see and run only what concerns their own chatbots.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chatledger.documents.retention import (
    MAX_LISTED,
    DocumentExpiry,
    erase_blobs,
    plan_document_expiry,
    versions_digest,
)
from chatledger.errors import InvalidInput, NotFound
from chatledger.events import Actor, Category, Entity, Event
from chatledger.ledger.entry import utc_timestamp
from chatledger.ledger.service import Ledger
from chatledger.ledger.writer import WorkContext
from chatledger.privacy.holds import ActiveHolds, Query, active_holds, install_on_ledger
from chatledger.store.base import Store

if TYPE_CHECKING:
    from chatledger.platform import Platform

log = logging.getLogger(__name__)

GLOBAL = "*"
WORKSPACE_PREFIX = "ws:"
IP_RULE = "ip"
DOCUMENTS_RULE = "documents"
RULES: dict[str, str] = {
    **{c.value: f"payloads of {c.value} events" for c in Category},
    IP_RULE: "payloads carrying a visitor IP address (access, security, conversation events)",
    DOCUMENTS_RULE: "content of document versions, from when they were replaced or deleted",
}
DEFAULT_DAYS: dict[str, int | None] = {
    "security": 2192,  # 6 years
    "access": 2192,
    "message": 365,  # transcripts: 1 year
    "conversation": 365,
    IP_RULE: 30,
    DOCUMENTS_RULE: None,  # see chatledger.documents.retention
}
IP_CATEGORIES = frozenset({"access", "security", "conversation"})
MAX_DAYS = 36_500
BATCH = 2000
JOB_ACTOR = Actor("system", "retention-job")
DEFAULT_EVERY = 6 * 3600.0


# -- time helpers (shared with the audit modules) --------------------------------------------


def parse_time(value: str, *, end: bool = False) -> str:
    """An ISO 8601 date or date-time as a ledger timestamp (UTC, microseconds, ``Z``). A bare
    date means the start of that day, or with ``end=True`` its last microsecond."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            moment = day + timedelta(days=1) - timedelta(microseconds=1) if end else day
        else:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            moment = moment.astimezone(UTC)
    except ValueError:
        raise InvalidInput(
            f"not an ISO 8601 date or time: {value!r}", details={"value": value[:50]}
        ) from None
    return utc_timestamp(moment)


def seq_at_time(store: Store, ts: str, *, after: bool = False) -> int:
    """The first seq whose timestamp is at or after ``ts`` (strictly after, with ``after``).
    Timestamps never decrease along the log, so this is a binary search over the key."""
    lo, hi = 0, store.size()
    while lo < hi:
        mid = (lo + hi) // 2
        rows = store.query("SELECT ts FROM ledger_entries WHERE seq = ?", (mid,))
        value = str(rows[0][0]) if rows else ""
        if value < ts or (after and value == ts):
            lo = mid + 1
        else:
            hi = mid
    return lo


# -- policies --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    rule: str
    days: int | None
    source: str  # "default", "global" (the deployment), "workspace" or "chatbot"
    chatbot_id: str | None = None
    workspace_id: str | None = None
    updated_at: str | None = None
    updated_by: str | None = None
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def workspace_scope(workspace_id: str) -> str:
    return f"{WORKSPACE_PREFIX}{workspace_id}"


@dataclass
class Policies:
    overrides: dict[tuple[str, str], Policy] = field(default_factory=dict)
    workspace_of: dict[str, str] = field(default_factory=dict)
    """Each chatbot's workspace (deleted chatbots included)."""

    def policy(
        self, rule: str, chatbot_id: str | None = None, workspace_id: str | None = None
    ) -> Policy:
        if chatbot_id is not None:
            if (chatbot_id, rule) in self.overrides:
                return self.overrides[(chatbot_id, rule)]
            workspace_id = workspace_id or self.workspace_of.get(chatbot_id)
        if workspace_id is not None and (workspace_scope(workspace_id), rule) in self.overrides:
            return self.overrides[(workspace_scope(workspace_id), rule)]
        if (GLOBAL, rule) in self.overrides:
            return self.overrides[(GLOBAL, rule)]
        return Policy(rule, DEFAULT_DAYS.get(rule), "default")

    def days(self, rule: str, chatbot_id: str | None = None) -> int | None:
        return self.policy(rule, chatbot_id).days

    def effective(
        self, chatbot_id: str | None = None, workspace_id: str | None = None
    ) -> list[Policy]:
        return [self.policy(rule, chatbot_id, workspace_id) for rule in RULES]

    def chatbot_overrides(self, workspace_id: str | None = None) -> list[Policy]:
        """Chatbots' own policies (of one workspace's chatbots, or of all)."""
        return sorted(
            (
                p
                for p in self.overrides.values()
                if p.source == "chatbot"
                and (
                    workspace_id is None
                    or self.workspace_of.get(p.chatbot_id or "") == workspace_id
                )
            ),
            key=lambda p: (p.chatbot_id or "", p.rule),
        )

    def workspace_overrides(self, workspace_id: str | None = None) -> list[Policy]:
        return sorted(
            (
                p
                for p in self.overrides.values()
                if p.source == "workspace" and workspace_id in (None, p.workspace_id)
            ),
            key=lambda p: (p.workspace_id or "", p.rule),
        )

    def shortest_days(self) -> int | None:
        """The shortest time any payload rule keeps anything (documents are not payloads)."""
        values = [
            p.days
            for p in self.overrides.values()
            if p.days is not None and p.rule != DOCUMENTS_RULE
        ]
        values += [d for r, d in DEFAULT_DAYS.items() if d is not None and r != DOCUMENTS_RULE]
        return min(values) if values else None


def _scope_parts(scope: str) -> tuple[str, str | None, str | None]:
    """(source, chatbot id, workspace id) of a stored scope."""
    if scope == GLOBAL:
        return "global", None, None
    if scope.startswith(WORKSPACE_PREFIX):
        return "workspace", None, scope[len(WORKSPACE_PREFIX) :]
    return "chatbot", scope, None


def load_policies(query: Query) -> Policies:
    rows = query(
        "SELECT scope, rule, days, updated_at, updated_by, seq FROM retention_policies", ()
    )
    found = Policies()
    for scope, rule, days, updated_at, updated_by, seq in rows:
        source, chatbot_id, workspace_id = _scope_parts(str(scope))
        found.overrides[(str(scope), str(rule))] = Policy(
            str(rule),
            None if days is None else int(days),
            source,
            chatbot_id,
            workspace_id,
            updated_at,
            updated_by,
            int(seq),
        )
    found.workspace_of = {
        str(bot): str(ws) for bot, ws in query("SELECT id, workspace_id FROM chatbots", ())
    }
    return found


def policies(ledger: Ledger) -> Policies:
    return load_policies(ledger.store.query)


def _check_days(days: Any) -> int | None:
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be an integer from 1 to {MAX_DAYS}, or null (forever)")
    return days


def set_policy(
    ledger: Ledger,
    actor: Actor,
    rule: str,
    days: int | None,
    *,
    chatbot_id: str | None = None,
    workspace_id: str | None = None,
    reset: bool = False,
) -> dict[str, Any]:
    """Set (or with ``reset`` remove) a policy for one chatbot, for a workspace's chatbots, or
    (neither given) for the deployment; recorded as ``retention.update`` with the effective
    policy before and after."""
    if rule not in RULES:
        raise InvalidInput(
            f"unknown retention rule {rule!r}: use one of {', '.join(RULES)}",
            details={"rule": str(rule)[:50]},
        )
    value = None if reset else _check_days(days)
    if chatbot_id is not None:
        rows = ledger.store.query(
            "SELECT seq FROM ledger_entries WHERE chatbot_id = ? ORDER BY seq LIMIT 1",
            (chatbot_id,),
        )
        if not rows:
            raise NotFound(f"no chatbot {chatbot_id} in the ledger")
    scope = chatbot_id or (workspace_scope(workspace_id) if workspace_id else GLOBAL)
    source, _, _ = _scope_parts(scope)

    def work(ctx: WorkContext) -> tuple[dict[str, Any], list[Event]]:
        current = load_policies(ctx.txn.execute)
        before = current.policy(rule, chatbot_id, workspace_id)
        now = utc_timestamp()
        if reset:
            ctx.txn.execute(
                "DELETE FROM retention_policies WHERE scope = ? AND rule = ?", (scope, rule)
            )
            current.overrides.pop((scope, rule), None)
        else:
            ctx.txn.execute(
                "INSERT INTO retention_policies (scope, rule, days, updated_at, updated_by, seq) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, rule) DO UPDATE SET "
                "days = excluded.days, updated_at = excluded.updated_at, "
                "updated_by = excluded.updated_by, seq = excluded.seq",
                (scope, rule, value, now, actor.id, ctx.next_seq),
            )
            current.overrides[(scope, rule)] = Policy(
                rule, value, source, chatbot_id, workspace_id, now, actor.id, ctx.next_seq
            )
        after = current.policy(rule, chatbot_id, workspace_id)
        attributes: dict[str, Any] = {
            "rule": rule,
            "scope": scope,
            "reset": reset,
            "before": {"days": before.days, "source": before.source},
            "after": {"days": after.days, "source": after.source},
        }
        if chatbot_id is not None:
            attributes["chatbot_id"] = chatbot_id
        if workspace_id is not None:
            attributes["workspace_id"] = workspace_id
        result = {
            "rule": rule,
            "chatbot_id": chatbot_id,
            "workspace_id": workspace_id,
            "before": before.to_json(),
            "after": after.to_json(),
            "seq": ctx.next_seq,
        }
        event = Event(
            "retention.update",
            actor,
            Entity("retention_policy", f"{scope}:{rule}"),
            attributes=attributes,
        )
        return result, [event]

    return ledger.transact(work)[0]


# -- expiry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    seq: int
    ts: str
    category: str
    action: str
    actor_id: str
    chatbot_id: str | None
    conversation_id: str | None
    subject: str | None
    rule: str = ""
    days: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "category": self.category,
            "action": self.action,
            "chatbot_id": self.chatbot_id,
            "conversation_id": self.conversation_id,
            "rule": self.rule,
            "days": self.days,
        }


@dataclass
class ExpiryReport:
    dry_run: bool
    now: str
    run_id: str
    expired: list[Candidate] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)
    """Payloads past their time but kept under legal hold, by hold id."""
    event_seqs: list[int] = field(default_factory=list)
    erased: int = 0
    documents: DocumentExpiry = field(default_factory=DocumentExpiry)
    """Document versions whose content is due (see chatledger.documents.retention)."""
    blobs_erased: int = 0

    def by_rule(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.expired:
            counts[item.rule] = counts.get(item.rule, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self, *, limit: int | None = 1000) -> dict[str, Any]:
        items = self.expired if limit is None else self.expired[:limit]
        return {
            "dry_run": self.dry_run,
            "now": self.now,
            "run_id": self.run_id,
            "expired": len(self.expired),
            "erased": self.erased,
            "by_rule": self.by_rule(),
            "held": sum(self.held.values()),
            "held_by_hold": dict(sorted(self.held.items())),
            "event_seqs": self.event_seqs,
            "items": [c.to_json() for c in items],
            "items_truncated": len(items) < len(self.expired),
            "documents": self.documents.to_json(limit=limit) | {"blobs_erased": self.blobs_erased},
        }


def _cutoff(now: datetime, days: int) -> str:
    return utc_timestamp(now - timedelta(days=days))


def _payload_rows(store: Store, start: int, end: int) -> Iterator[Candidate]:
    """Entries in ``[start, end)`` whose payload is still stored, in seq order."""
    pos = start
    while pos < end:
        rows = store.query(
            "SELECT e.seq, e.ts, e.category, e.action, e.actor_id, e.chatbot_id, "
            "e.conversation_id, e.subject FROM ledger_payloads p "
            "JOIN ledger_entries e ON e.seq = p.seq WHERE p.seq >= ? AND p.seq < ? "
            "ORDER BY p.seq LIMIT ?",
            (pos, end, 5000),
        )
        if not rows:
            return
        for row in rows:
            yield Candidate(
                int(row[0]),
                str(row[1]),
                str(row[2]),
                str(row[3]),
                str(row[4]),
                row[5],
                row[6],
                row[7],
            )
        pos = int(rows[-1][0]) + 1


class _Planner:
    def __init__(self, ledger: Ledger, now: datetime, holds: ActiveHolds) -> None:
        self.ledger = ledger
        self.now = now
        self.policies = policies(ledger)
        self.holds = holds
        self._cutoffs: dict[tuple[str, str | None], str | None] = {}

    def cutoff(self, rule: str, chatbot_id: str | None) -> str | None:
        key = (rule, chatbot_id)
        if key not in self._cutoffs:
            days = self.policies.days(rule, chatbot_id)
            self._cutoffs[key] = None if days is None else _cutoff(self.now, days)
        return self._cutoffs[key]

    def held_by(self, c: Candidate) -> str | None:
        if not self.holds:
            return None
        return self.holds.covering(
            conversation_id=c.conversation_id,
            chatbot_id=c.chatbot_id,
            subject_ref=c.subject,
            actor_ref=lambda: self.ledger.subject_ref(c.actor_id),
        )

    def classify(self, c: Candidate) -> Candidate | None:
        """The candidate with the rule that expires it, or None if it is not yet due."""
        cutoff = self.cutoff(c.category, c.chatbot_id)
        if cutoff is not None and c.ts < cutoff:
            days = self.policies.days(c.category, c.chatbot_id)
            return replace(c, rule=c.category, days=days)
        if c.category in IP_CATEGORIES:
            cutoff = self.cutoff(IP_RULE, c.chatbot_id)
            if cutoff is not None and c.ts < cutoff:
                days = self.policies.days(IP_RULE, c.chatbot_id)
                return replace(c, rule=IP_RULE, days=days)
        return None

    def has_ip(self, c: Candidate) -> bool:
        record = self.ledger.read(c.seq)
        return record.payload is not None and bool(record.payload.get("ip"))

    def bound(self) -> int:
        """One past the last seq any policy could expire now."""
        shortest = self.policies.shortest_days()
        if shortest is None:
            return 0
        return seq_at_time(self.ledger.store, _cutoff(self.now, shortest))


def plan_expiry(
    ledger: Ledger, *, now: datetime | None = None, workspace_id: str | None = None
) -> ExpiryReport:
    """What expiry would erase now (nothing is written): payloads past their policy, less
    those under legal hold; with ``workspace_id``, only those of that workspace's chatbots."""
    moment = now or datetime.now(UTC)
    report = ExpiryReport(True, utc_timestamp(moment), f"ret_{uuid.uuid4().hex[:16]}")
    planner = _Planner(ledger, moment, active_holds(ledger.store.query))
    workspace_of = planner.policies.workspace_of
    for row in _payload_rows(ledger.store, 0, planner.bound()):
        if workspace_id is not None and workspace_of.get(row.chatbot_id or "") != workspace_id:
            continue
        due = planner.classify(row)
        if due is None:
            continue
        if due.rule == IP_RULE and not planner.has_ip(due):
            continue
        hold = planner.held_by(due)
        if hold is not None:
            report.held[hold] = report.held.get(hold, 0) + 1
            continue
        report.expired.append(due)
    report.documents = _plan_documents(planner, ledger.store.query, planner.holds, workspace_id)
    return report


def _plan_documents(
    planner: _Planner, query: Query, holds: ActiveHolds, workspace_id: str | None
) -> DocumentExpiry:
    def cutoff(chatbot_id: str) -> tuple[str, int] | None:
        moment = planner.cutoff(DOCUMENTS_RULE, chatbot_id)
        days = planner.policies.days(DOCUMENTS_RULE, chatbot_id)
        return None if moment is None or days is None else (moment, days)

    chatbots = None
    if workspace_id is not None:
        chatbots = {c for c, w in planner.policies.workspace_of.items() if w == workspace_id}
    return plan_document_expiry(query, cutoff, holds, chatbot_ids=chatbots)


def _seqs_digest(seqs: Sequence[int]) -> str:
    return hashlib.sha256(",".join(str(s) for s in seqs).encode()).hexdigest()


def run_expiry(
    ledger: Ledger,
    actor: Actor = JOB_ACTOR,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch: int = BATCH,
    workspace_id: str | None = None,
) -> ExpiryReport:
    """Erase the payloads past their retention (or, with ``dry_run``, only list them); with
    ``workspace_id``, only those of that workspace's chatbots.

    Each batch commits with one ``privacy.retention_expired`` event that the erasure records
    name; a run that erases nothing still records one event, so every run is on the record.
    Holds are checked again inside each batch's transaction.
    """
    report = plan_expiry(ledger, now=now, workspace_id=workspace_id)
    report.dry_run = dry_run
    if dry_run:
        return report
    snapshot = {p.rule: p.days for p in policies(ledger).effective(workspace_id=workspace_id)}
    planned = report.expired
    report.expired = []
    batches = [planned[i : i + batch] for i in range(0, len(planned), batch)] or [[]]
    for number, items in enumerate(batches, start=1):

        def work(
            ctx: WorkContext, items: list[Candidate] = items, number: int = number
        ) -> tuple[list[Candidate], list[Event]]:
            erased: list[Candidate] = []
            held = 0
            if items:
                marks = ",".join("?" * len(items))
                present = {
                    int(r[0])
                    for r in ctx.txn.execute(
                        f"SELECT seq FROM ledger_payloads WHERE seq IN ({marks})",
                        [c.seq for c in items],
                    )
                }
                holds = active_holds(ctx.txn.execute)
                for c in items:
                    if c.seq not in present:
                        continue
                    if holds and holds.covering(
                        conversation_id=c.conversation_id,
                        chatbot_id=c.chatbot_id,
                        subject_ref=c.subject,
                        actor_ref=functools.partial(ledger.subject_ref, c.actor_id),
                    ):
                        held += 1
                        continue
                    erased.append(c)
                by_rule: dict[str, list[int]] = {}
                for c in erased:
                    by_rule.setdefault(c.rule, []).append(c.seq)
                for rule, seqs in sorted(by_rule.items()):
                    ctx.txn.record_payload_erasures(
                        seqs, ctx.next_seq, f"retention:{rule}", delete=True
                    )
            seqs = [c.seq for c in erased]
            counts: dict[str, int] = {}
            for c in erased:
                counts[c.rule] = counts.get(c.rule, 0) + 1
            event = Event(
                "privacy.retention_expired",
                actor,
                Entity("retention_run", report.run_id),
                attributes={
                    "run_id": report.run_id,
                    "batch": number,
                    "batches": len(batches),
                    "as_of": report.now,
                    "payloads_erased": len(seqs),
                    "by_rule": dict(sorted(counts.items())),
                    "first_seq": min(seqs) if seqs else None,
                    "last_seq": max(seqs) if seqs else None,
                    "seqs_sha256": _seqs_digest(sorted(seqs)),
                    "held_skipped": sum(report.held.values()) + held,
                    "policies": snapshot,
                    **({"workspace_id": workspace_id} if workspace_id else {}),
                },
            )
            return erased, [event]

        erased, receipts = ledger.transact(work)
        report.expired.extend(erased)
        report.erased += len(erased)
        report.event_seqs.extend(r.seq for r in receipts)
    if report.documents.due:
        _erase_documents(ledger, actor, report, workspace_id, now)
    if report.erased or report.blobs_erased:
        purge = getattr(ledger.store, "checkpoint_wal", None)
        if callable(purge):
            purge()
    return report


def _erase_documents(
    ledger: Ledger,
    actor: Actor,
    report: ExpiryReport,
    workspace_id: str | None,
    now: datetime | None,
) -> None:
    """Erase the content of the document versions due, in one transaction that plans again
    (holds placed since the plan count) and records a ``privacy.retention_expired`` event."""
    moment = now or datetime.now(UTC)
    planner = _Planner(ledger, moment, ActiveHolds())

    def work(ctx: WorkContext) -> tuple[tuple[DocumentExpiry, int], list[Event]]:
        execute = ctx.txn.execute
        plan = _plan_documents(planner, execute, active_holds(execute), workspace_id)
        erased = erase_blobs(execute, plan.blobs(), utc_timestamp())
        listed = plan.due[:MAX_LISTED]
        event = Event(
            "privacy.retention_expired",
            actor,
            Entity("retention_run", report.run_id),
            attributes={
                "run_id": report.run_id,
                "as_of": report.now,
                "rule": DOCUMENTS_RULE,
                "document_versions": len(plan.due),
                "blobs_erased": erased,
                "bytes_erased": sum(v.size for v in plan.due),
                "versions": [
                    {"document_id": v.document_id, "version": v.version, "days": v.days}
                    for v in listed
                ],
                "versions_listed": len(listed),
                "versions_sha256": versions_digest(plan.due),
                "held_skipped": sum(plan.held.values()),
                **({"workspace_id": workspace_id} if workspace_id else {}),
            },
        )
        return (plan, erased), [event]

    (plan, erased), receipts = ledger.transact(work)
    report.documents = plan
    report.blobs_erased = erased
    report.event_seqs.extend(r.seq for r in receipts)


# -- the job in the server --------------------------------------------------------------------


def start_jobs(
    platform: Platform, stop: threading.Event, every: float = DEFAULT_EVERY, delay: float = 60.0
) -> threading.Thread:
    """Run expiry in the server: first after ``delay`` seconds, then every ``every`` seconds,
    until ``stop`` is set. Also wires legal holds into the ledger."""
    install_on_ledger(platform.ledger)

    def loop() -> None:
        wait = delay
        while not stop.wait(wait):
            wait = every
            try:
                report = run_expiry(platform.ledger)
                if report.erased:
                    log.info("retention: erased %d expired payloads", report.erased)
            except Exception:  # keep the job alive; the next round retries
                log.exception("retention expiry job failed")

    thread = threading.Thread(target=loop, name="retention-expiry", daemon=True)
    thread.start()
    return thread
