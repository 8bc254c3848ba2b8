"""Audit search and export: filters, stable cursor pagination by seq, recorded access.

The scan walks the ledger in seq order (newest or oldest first) through windows of seqs that
grow geometrically (4,096, 16,384, ... entries): dense filters fill a page from the first small
window, sparse ones reach the whole ledger in a handful of index range scans. Each window is
one SQL query on ``ledger_entries`` that an index answers (actor, action, category, outcome,
entity, chatbot, conversation, time), with ``seq`` as the index's trailing column. Role and
severity come from the audit index's facets, full text from its text index: FTS5 on SQLite
(audit/textindex.py), a ``tsvector`` with a GIN index on PostgreSQL (audit/pg_textindex.py),
with the same results on both; for the newest entries not yet indexed, role and severity are
read from the entry itself, so those filters are always exact.

A cursor is the seq of the last item of the previous page: the next page continues strictly
after it, so pages are stable while the ledger grows. Every search and export is itself
recorded (``audit.search``, ``audit.export``), with the filters in the attributes and the
free-text query, which may name a person, in the erasable payload.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chatledger.audit.formats import ExportRecord, Format, FormatContext, get_format
from chatledger.audit.textindex import (
    IndexState,
    Match,
    index_for,
    index_supported,
    sqlite_path,
    to_fts_query,
)
from chatledger.errors import InvalidInput
from chatledger.events import ACTIONS, Actor, Category, Entity, Event, Outcome
from chatledger.ledger.entry import utc_timestamp
from chatledger.ledger.service import Ledger
from chatledger.ledger.writer import Receipt

_CUSTOM_LO, _CUSTOM_HI = "custom.", "custom/"  # the range of the free-form actions

ORDERS = ("newest", "oldest")
MAX_LIMIT = 200
FIRST_WINDOW = 4096
GIN_WINDOW = 16384
"""On PostgreSQL, full text is found either by reading a window's texts in seq order (a
page of a frequent word fills at once) or through the GIN index (all of the query's
matches, then the window's: cheap for a rare query). :meth:`Scanner.page` chooses (see
``_next_window``); other callers of :meth:`Scanner.range_sql` get GIN from this width on."""
GIN_MATCHES = 5_000
"""A text query expected to match at most this many entries in the searched range is looked
up through GIN."""
TS_SLACK = timedelta(minutes=10)
"""Time bounds become seq bounds through the ts index, widened by this much so that entries
written by processes whose clocks differ slightly are not missed (ts stays in the filter)."""

Visibility = Callable[[ExportRecord], bool]
"""Whether the caller may see an entry (for example: it belongs to their workspace)."""

_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_][a-z0-9_-]*)*\.?\*?$")
_MAX_VALUE = 200


def parse_time(value: str, name: str) -> str:
    """An ISO 8601 date or date-time (UTC unless an offset is given) as a ledger timestamp."""
    text = value.strip()
    try:
        if len(text) == 10:
            moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(
            f"{name} must be an ISO 8601 date or date-time, e.g. 2026-01-31T12:00:00Z",
            details={name: value[:50]},
        ) from None
    return utc_timestamp(moment.astimezone(UTC))


def _shift(ts: str, delta: timedelta) -> str:
    moment = datetime.fromisoformat(ts[:-1] + "+00:00")
    try:
        return utc_timestamp(moment + delta)
    except OverflowError:
        return ts


def _values(value: str | None, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    for item in items:
        if len(item) > _MAX_VALUE:
            raise InvalidInput(f"{name} values must be at most {_MAX_VALUE} characters")
    if len(items) > 50:
        raise InvalidInput(f"{name} may list at most 50 values")
    return items


def _single(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > _MAX_VALUE:
        raise InvalidInput(f"{name} must be at most {_MAX_VALUE} characters")
    return value


@dataclass(frozen=True)
class Filters:
    """What to look for. Lists (comma-separated in the API) match any of their values."""

    start: str | None = None
    end: str | None = None
    actor: str | None = None
    roles: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    action_prefixes: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    entity_type: str | None = None
    entity_id: str | None = None
    chatbot_id: str | None = None
    conversation_id: str | None = None
    outcomes: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    q: str | None = None
    raw: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(
        cls,
        *,
        start: str | None = None,
        end: str | None = None,
        actor: str | None = None,
        role: str | None = None,
        action: str | None = None,
        category: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        chatbot_id: str | None = None,
        conversation_id: str | None = None,
        outcome: str | None = None,
        severity: str | None = None,
        q: str | None = None,
    ) -> Filters:
        given = {
            "from": start,
            "to": end,
            "actor": actor,
            "role": role,
            "action": action,
            "category": category,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "chatbot_id": chatbot_id,
            "conversation_id": conversation_id,
            "outcome": outcome,
            "severity": severity,
        }
        raw = {k: v for k, v in given.items() if v not in (None, "")}
        start_ts = parse_time(start, "from") if start else None
        end_ts = parse_time(end, "to") if end else None
        if start_ts and end_ts and end_ts <= start_ts:
            raise InvalidInput("to must be after from")
        exact: list[str] = []
        prefixes: list[str] = []
        for item in _values(action, "action"):
            if not _ACTION_RE.match(item):
                raise InvalidInput(
                    "action must be an action name such as 'document.upload' or a prefix "
                    "such as 'guard.*'",
                    details={"action": item[:100]},
                )
            if item.endswith("*"):
                prefix = item[:-1]
                if not prefix:
                    raise InvalidInput("an action prefix needs at least one character")
                prefixes.append(prefix)
            else:
                exact.append(item)
        categories = _values(category, "category")
        known = {c.value for c in Category}
        for item in categories:
            if item not in known:
                raise InvalidInput(
                    f"category must be one of {', '.join(sorted(known))}",
                    details={"category": item[:50]},
                )
        outcomes = _values(outcome, "outcome")
        for item in outcomes:
            if item not in {o.value for o in Outcome}:
                raise InvalidInput(
                    f"outcome must be one of {', '.join(o.value for o in Outcome)}",
                    details={"outcome": item[:50]},
                )
        severities = tuple(s.lower() for s in _values(severity, "severity"))
        if q is not None and q.strip() == "":
            q = None
        if q is not None:
            to_fts_query(q)  # validates
        return cls(
            start=start_ts,
            end=end_ts,
            actor=_single(actor, "actor"),
            roles=_values(role, "role"),
            actions=tuple(exact),
            action_prefixes=tuple(prefixes),
            categories=categories,
            entity_type=_single(entity_type, "entity_type"),
            entity_id=_single(entity_id, "entity_id"),
            chatbot_id=_single(chatbot_id, "chatbot_id"),
            conversation_id=_single(conversation_id, "conversation_id"),
            outcomes=outcomes,
            severities=severities,
            q=q,
            raw=raw,
        )

    def to_json(self) -> dict[str, Any]:
        """The filters as given (``q`` excluded: it goes to the erasable payload)."""
        return dict(sorted(self.raw.items()))

    @property
    def needs_index(self) -> bool:
        return bool(self.roles or self.severities or self.q)


@dataclass(frozen=True)
class Item:
    seq: int
    entry: dict[str, Any]
    payload_status: str
    erasure_seq: int | None = None
    match: Match | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "entry": self.entry,
            "payload_status": self.payload_status,
        }
        if self.erasure_seq is not None:
            out["erasure_seq"] = self.erasure_seq
        if self.match is not None:
            out["match"] = self.match.to_json()
        return out


@dataclass(frozen=True)
class SearchPage:
    items: list[Item]
    next_cursor: str | None
    order: str
    text_index: IndexState | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "items": [item.to_json() for item in self.items],
            "next_cursor": self.next_cursor,
            "order": self.order,
        }
        if self.text_index is not None:
            out["text_index"] = self.text_index.to_json()
        return out


# -- the scan ---------------------------------------------------------------------------------


class Scanner:
    """Finds the entries matching ``filters``, a page at a time, in seq order."""

    def __init__(
        self,
        ledger: Ledger,
        filters: Filters,
        *,
        watermark: int | None = None,
        fts_query: str | None = None,
        upto: int | None = None,
    ) -> None:
        self.ledger = ledger
        self.filters = filters
        self.sqlite = sqlite_path(ledger) is not None
        self.postgres = getattr(ledger.store, "dialect", "") == "postgresql"
        if filters.needs_index and not index_supported(ledger):
            raise InvalidInput(
                "role, severity and full-text (q) filters need the SQLite or PostgreSQL store"
            )
        self.watermark = watermark if watermark is not None else 0
        self.fts_query = fts_query
        size = ledger.size()
        self.size = size if upto is None else min(size, upto)
        self.where: list[str] = []
        self.params: list[Any] = []
        self.hint: str | None = None
        self.empty = False
        self.lo, self.hi = 0, self.size
        self._plan()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.ledger.store.query(sql, params)

    def _distinct(self, column: str, index: str, lo: str, hi: str | None) -> list[str]:
        """Distinct values of an indexed column in [lo, hi), by hopping through the index."""
        if self.postgres:
            return self._distinct_pg(column, lo, hi)
        found: list[str] = []
        hint = f"INDEXED BY {index}" if self.sqlite else ""
        current: str | None = None
        while len(found) < 1000:
            conds = [f"{column} > ?" if current is not None else f"{column} >= ?"]
            params: list[Any] = [current if current is not None else lo]
            if hi is not None:
                conds.append(f"{column} < ?")
                params.append(hi)
            rows = self._query(
                f"SELECT {column} FROM ledger_entries {hint} WHERE {' AND '.join(conds)} "
                f"ORDER BY {column} LIMIT 1",
                params,
            )
            if not rows:
                break
            current = str(rows[0][0])
            found.append(current)
        return found

    def _actions_with_prefix(self, prefix: str) -> set[str]:
        """Every action that starts with ``prefix``. The vocabulary is closed except for
        ``custom.*`` actions, so only those are looked up in the index (on PostgreSQL a
        look-up visits every distinct action of every partition)."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        found = {action for action in ACTIONS if prefix <= action < upper}
        lo, hi = max(prefix, _CUSTOM_LO), min(upper, _CUSTOM_HI)
        if lo < hi:
            found.update(self._distinct("action", "audit_entries_action", lo, hi))
        return found

    def _distinct_pg(self, column: str, lo: str, hi: str | None) -> list[str]:
        """The same on PostgreSQL, in one statement (a loose index scan). Every value is
        visited and the range applied here, bytewise as on SQLite: the database's collation
        may order ``guard.x`` away from ``guard.`` (``en_US`` ignores punctuation)."""
        rows = self._query(
            f"WITH RECURSIVE v(value) AS ("
            f"(SELECT {column} FROM ledger_entries ORDER BY {column} LIMIT 1) UNION ALL "
            f"SELECT (SELECT {column} FROM ledger_entries WHERE {column} > v.value "
            f"ORDER BY {column} LIMIT 1) FROM v WHERE v.value IS NOT NULL) "
            f"SELECT value FROM v WHERE value IS NOT NULL LIMIT 100000"
        )
        low, high = lo.encode(), hi.encode() if hi is not None else None
        values = sorted(str(r[0]).encode() for r in rows)
        return [v.decode() for v in values if v >= low and (high is None or v < high)][:1000]

    def _seq_at(self, ts: str) -> int:
        """The first seq whose timestamp is at or after ``ts`` (the size when none)."""
        hint = "INDEXED BY audit_entries_ts" if self.sqlite else ""
        rows = self._query(
            f"SELECT seq FROM ledger_entries {hint} WHERE ts >= ? ORDER BY ts, seq LIMIT 1",
            (ts,),
        )
        return int(rows[0][0]) if rows else self.size

    def _in(self, column: str, values: Sequence[str]) -> None:
        if len(values) == 1:
            self.where.append(f"e.{column} = ?")
        else:
            self.where.append(f"e.{column} IN ({','.join('?' * len(values))})")
        self.params.extend(values)

    def _plan(self) -> None:
        f = self.filters
        hints: list[str] = []
        if f.start is not None:
            self.lo = max(self.lo, self._seq_at(_shift(f.start, -TS_SLACK)))
            self.where.append("e.ts >= ?")
            self.params.append(f.start)
        if f.end is not None:
            self.hi = min(self.hi, self._seq_at(_shift(f.end, TS_SLACK)))
            self.where.append("e.ts < ?")
            self.params.append(f.end)
        if f.conversation_id is not None:
            self._in("conversation_id", [f.conversation_id])
            hints.append("ledger_entries_conversation")
        if f.entity_id is not None:
            types = (
                [f.entity_type]
                if f.entity_type is not None
                else self._distinct("entity_type", "ledger_entries_entity", "", None)
            )
            if not types:
                self.empty = True
            else:
                self._in("entity_type", types)
                self._in("entity_id", [f.entity_id])
                hints.append("ledger_entries_entity")
        elif f.entity_type is not None:
            self._in("entity_type", [f.entity_type])
            hints.append("ledger_entries_entity")
        if f.actor is not None:
            self._in("actor_id", [f.actor])
            hints.append("audit_entries_actor")
        if f.chatbot_id is not None:
            self._in("chatbot_id", [f.chatbot_id])
            hints.append("ledger_entries_chatbot")
        if f.actions or f.action_prefixes:
            actions = set(f.actions)
            for prefix in f.action_prefixes:
                actions.update(self._actions_with_prefix(prefix))
            if not actions:
                self.empty = True
            else:
                self._in("action", sorted(actions))
                hints.append("audit_entries_action")
        if f.outcomes:
            self._in("outcome", list(f.outcomes))
            if "success" not in f.outcomes:
                # Lets the partial index on non-success outcomes answer.
                self.where.append("e.outcome != 'success'")
                hints.append("audit_entries_outcome")
        if f.categories:
            self._in("category", list(f.categories))
            if not (f.actions or f.action_prefixes):
                # An entry's category follows from its action: the action index answers.
                actions = {a for a, c in ACTIONS.items() if c.value in f.categories}
                if Category.CUSTOM.value in f.categories:
                    actions.update(
                        self._distinct("action", "audit_entries_action", _CUSTOM_LO, _CUSTOM_HI)
                    )
                if not actions:
                    self.empty = True
                else:
                    self._in("action", sorted(actions))
                    hints.append("audit_entries_action")
        if self.sqlite and hints:
            self.hint = hints[0]
        if self.lo >= self.hi:
            self.empty = True

    def range_sql(
        self, bottom: int, top: int, *, desc: bool, limit: int | None, wide: bool | None = None
    ) -> tuple[str, list[Any]] | None:
        """The query of the matching entries with seq in [bottom, top) (None: none can
        match). The window must not straddle the index watermark (see ``_cuts``). ``wide``
        chooses how PostgreSQL finds text (see :data:`GIN_WINDOW`)."""
        wide = top - bottom >= GIN_WINDOW if wide is None else wide
        f = self.filters
        conds = ["e.seq >= ?", "e.seq < ?", *self.where]
        params: list[Any] = [bottom, top, *self.params]
        subquery = False
        if f.roles or f.severities:
            if top <= self.watermark:
                facet = ["seq >= ?", "seq < ?"]
                facet_params: list[Any] = [bottom, top]
                for column, values in (("role", f.roles), ("severity", f.severities)):
                    if values:
                        facet.append(f"{column} IN ({','.join('?' * len(values))})")
                        facet_params.extend(values)
                conds.append(f"e.seq IN (SELECT seq FROM audit_facets WHERE {' AND '.join(facet)})")
                params.extend(facet_params)
                subquery = True
            else:  # not indexed yet: read the entry itself
                for path, values in (
                    ("$.actor.role", f.roles),
                    ("$.attributes.severity", f.severities),
                ):
                    if values:
                        field = (
                            f"convert_from(e.body, 'UTF8')::jsonb #>> "
                            f"'{{{path[2:].replace('.', ',')}}}'"
                            if self.postgres
                            else f"json_extract(CAST(e.body AS TEXT), '{path}')"
                        )
                        conds.append(f"{field} IN ({','.join('?' * len(values))})")
                        params.extend(values)
        if self.fts_query is not None:
            if bottom >= self.watermark or not self.fts_query:
                return None  # not indexed yet, or a query without a word (finds nothing)
            if self.postgres and wide:
                # The matches' seqs, computed once (GIN; OFFSET 0 keeps the seq range from
                # leading the planner off the index), then their entries by primary key;
                # when the text is the only condition, only the page's first matches.
                inner = (
                    "SELECT m.seq FROM (SELECT seq FROM audit_text "
                    "WHERE tsv @@ CAST(? AS tsquery) OFFSET 0) AS m WHERE m.seq >= ? AND m.seq < ?"
                )
                inner_params: list[Any] = [self.fts_query, bottom, top]
                only_text = not (self.where or f.roles or f.severities)
                if limit is not None and only_text:
                    inner += f" ORDER BY m.seq {'DESC' if desc else 'ASC'} LIMIT ?"
                    inner_params.append(limit)
                conds.append(f"e.seq = ANY(ARRAY({inner}))")
                params.extend(inner_params)
            elif self.postgres:
                conds.append(  # the function, not the operator: never through GIN
                    "e.seq IN (SELECT seq FROM audit_text "
                    "WHERE ts_match_vq(tsv, CAST(? AS tsquery)) AND seq >= ? AND seq < ?)"
                )
            else:
                conds.append(
                    "e.seq IN (SELECT rowid FROM audit_text WHERE audit_text MATCH ? "
                    "AND rowid >= ? AND rowid < ?)"
                )
            if not (self.postgres and wide):
                params.extend([self.fts_query, bottom, top])
            subquery = True
        hint = f"INDEXED BY {self.hint}" if self.hint and not subquery else ""
        direction = "DESC" if desc else "ASC"
        sql = (
            f"SELECT e.seq, e.body FROM ledger_entries AS e {hint} WHERE {' AND '.join(conds)} "
            f"ORDER BY e.seq {direction}"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return sql, params

    def _window(
        self, bottom: int, top: int, desc: bool, limit: int, wide: bool
    ) -> list[tuple[int, bytes]]:
        query = self.range_sql(bottom, top, desc=desc, limit=limit, wide=wide)
        if query is None:
            return []
        rows = self._query(*query)
        return [(int(seq), bytes(body)) for seq, body in rows]

    def ranges(self, size: int) -> list[tuple[int, int]]:
        """[lo, hi) split into ranges of about ``size`` seqs, none straddling a cut."""
        if self.empty:
            return []
        bounds = sorted({self.lo, self.hi, *(c for c in self._cuts() if self.lo < c < self.hi)})
        out: list[tuple[int, int]] = []
        for start, end in itertools.pairwise(bounds):
            out.extend((a, min(a + size, end)) for a in range(start, end, size))
        return out

    def _cuts(self) -> list[int]:
        """Seqs that a window must not straddle (where indexed data ends)."""
        if self.filters.roles or self.filters.severities or self.fts_query is not None:
            return [self.watermark]
        return []

    def _next_window(
        self, window: int, bottom: int, top: int, gin: bool | None
    ) -> tuple[int, bool | None]:
        """The next window's width, and on PostgreSQL how a text search goes on (``gin``:
        None until decided). Windows grow fourfold. A text search walks its first indexed
        window; then, if its matches there (the text query's alone) say it is rare over the
        whole range, the rest of the range is one GIN look-up; otherwise it walks on, and
        the planner may drive from another filter's index."""
        if not (self.postgres and self.fts_query) or gin is not None:
            return window * 4, gin
        if bottom >= self.watermark:  # not indexed: nothing learnt yet
            return window, None
        rows = self._query(
            "SELECT count(*) FROM audit_text WHERE seq >= ? AND seq < ? "
            "AND ts_match_vq(tsv, CAST(? AS tsquery))",
            (bottom, top, self.fts_query),
        )
        if int(rows[0][0]) * (self.hi - self.lo) <= GIN_MATCHES * max(top - bottom, 1):
            return self.hi - self.lo, True
        return window * 4, False

    def page(
        self, *, desc: bool, cursor: int | None, limit: int
    ) -> tuple[list[tuple[int, bytes]], bool]:
        """Up to ``limit`` matching entries after ``cursor`` (exclusive) in the given order,
        and whether more may follow."""
        if self.empty:
            return [], False
        want = limit + 1
        out: list[tuple[int, bytes]] = []
        window = FIRST_WINDOW
        gin: bool | None = None
        cuts = self._cuts()
        if desc:
            top = self.hi if cursor is None else min(self.hi, cursor)
            while top > self.lo and len(out) < want:
                bottom = max(self.lo, top - window)
                for cut in cuts:
                    if bottom < cut < top:
                        bottom = cut
                out += self._window(bottom, top, True, want - len(out), bool(gin))
                if len(out) < want:
                    window, gin = self._next_window(window, bottom, top, gin)
                top = bottom
        else:
            bottom = self.lo if cursor is None else max(self.lo, cursor + 1)
            while bottom < self.hi and len(out) < want:
                top = min(self.hi, bottom + window)
                for cut in cuts:
                    if bottom < cut < top:
                        top = cut
                out += self._window(bottom, top, False, want - len(out), bool(gin))
                if len(out) < want:
                    window, gin = self._next_window(window, bottom, top, gin)
                bottom = top
        more = len(out) > limit
        return out[:limit], more


# -- payload status ---------------------------------------------------------------------------


Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
"""A read-only query function with ``?`` placeholders (``Store.query``)."""


def _query_of(source: Ledger | Query) -> Query:
    return source.store.query if isinstance(source, Ledger) else source


def payload_statuses(
    source: Ledger | Query, seqs: Sequence[int]
) -> dict[int, tuple[str, int | None]]:
    """The payload status of entries: ``present`` (stored, its subject key live), ``erased``
    (an erasure names it, or its key was destroyed; with the erasure's seq when recorded),
    or ``none``. Exact without reading the entries: a payload row exists only for an entry
    with a payload, and the database refuses to delete one that no erasure names."""
    if not seqs:
        return {}
    ordered = sorted(set(seqs))
    payloads: dict[int, bool] = {}
    erasures: dict[int, int] = {}
    query = _query_of(source)
    # A look-up of each payload's key by its primary key (a correlated subquery, NULL when
    # there is none): as a join, PostgreSQL's planner would hash the whole key table.
    join = (
        "SELECT p.seq, (SELECT k.wrapped IS NOT NULL FROM subject_keys k "
        "WHERE k.key_ref = p.key_ref) FROM ledger_payloads p WHERE "
    )
    if ordered[-1] - ordered[0] + 1 <= 4 * len(ordered):  # dense: two range scans
        lo, hi = ordered[0], ordered[-1] + 1
        payloads.update(
            (int(s), bool(live)) for s, live in query(join + "p.seq >= ? AND p.seq < ?", (lo, hi))
        )
        erasures.update(
            (int(s), int(e))
            for s, e in query(
                "SELECT seq, erasure_seq FROM ledger_payload_erasures WHERE seq >= ? AND seq < ?",
                (lo, hi),
            )
        )
    else:
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            marks = ",".join("?" * len(chunk))
            payloads.update(
                (int(s), bool(live)) for s, live in query(join + f"p.seq IN ({marks})", chunk)
            )
            erasures.update(
                (int(s), int(e))
                for s, e in query(
                    f"SELECT seq, erasure_seq FROM ledger_payload_erasures WHERE seq IN ({marks})",
                    chunk,
                )
            )
    out: dict[int, tuple[str, int | None]] = {}
    for seq in ordered:
        live = payloads.get(seq)
        if live:
            out[seq] = ("present", None)
        elif live is not None or seq in erasures:
            out[seq] = ("erased", erasures.get(seq))
        else:
            out[seq] = ("none", None)
    return out


def records(source: Ledger | Query, rows: Sequence[tuple[int, bytes]]) -> list[ExportRecord]:
    """Rows of (seq, body) as export records, with their payload status."""
    statuses = payload_statuses(source, [seq for seq, _ in rows])
    return [ExportRecord(seq, body, *statuses[seq]) for seq, body in rows]


# -- search -----------------------------------------------------------------------------------


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit() or len(cursor) > 18:
        raise InvalidInput("cursor must be the next_cursor of a previous page (a seq)")
    return int(cursor)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def prepare_index(
    ledger: Ledger, filters: Filters, *, budget_s: float | None
) -> tuple[IndexState | None, str | None]:
    """Bring the audit index up to date (bounded) when the filters need it. Returns the
    index's state and the text query in the index's own syntax (FTS5 or tsquery)."""
    if not index_supported(ledger):
        return None, None
    index = index_for(ledger)
    fts_query = index.text_query(filters.q) if filters.q else None
    state = index.state()
    if fts_query is not None and (not state.complete or index.erasures_pending()):
        index.catch_up(budget_s=budget_s)
        state = index.state()
    return state, fts_query


def search(
    ledger: Ledger,
    filters: Filters,
    *,
    order: str = "newest",
    cursor: str | None = None,
    limit: int = 50,
    budget_s: float | None = 0.2,
    visible: Visibility | None = None,
) -> SearchPage:
    """One page of matching entries (payloads are not returned; a text match carries a
    highlighted snippet). ``visible`` hides entries the caller may not see (workspaces)."""
    if order not in ORDERS:
        raise InvalidInput("order must be 'newest' or 'oldest'")
    check_limit(limit)
    after = parse_cursor(cursor)
    state, fts_query = prepare_index(ledger, filters, budget_s=budget_s)
    scanner = Scanner(
        ledger,
        filters,
        watermark=state.indexed_through if state else None,
        fts_query=fts_query,
    )
    rows, more = scanner.page(desc=order == "newest", cursor=after, limit=limit)
    found = records(ledger, rows)
    if visible is not None:
        found = [r for r in found if visible(r)]
    matches: dict[int, Match] = {}
    if fts_query is not None and found:
        stale = [r.seq for r in found if r.payload_status != "present"]
        if stale:  # erased since it was indexed: never show it, and forget it now
            index_for(ledger).forget(stale)
            found = [r for r in found if r.payload_status == "present"]
        assert filters.q is not None
        matches = index_for(ledger).snippets(filters.q, [r.seq for r in found])
        found = [r for r in found if r.seq in matches]
    items = [
        Item(r.seq, r.entry, r.payload_status, r.erasure_seq, matches.get(r.seq)) for r in found
    ]
    next_cursor = str(rows[-1][0]) if more and rows else None
    return SearchPage(
        items, next_cursor, order, state if fts_query is not None or filters.needs_index else None
    )


def iter_records(
    ledger: Ledger,
    filters: Filters,
    *,
    upto: int,
    batch: int = 2000,
    watermark: int | None = None,
    fts_query: str | None = None,
    visible: Visibility | None = None,
) -> Iterator[list[ExportRecord]]:
    """Every matching entry with seq below ``upto``, oldest first, in batches."""
    scanner = Scanner(ledger, filters, watermark=watermark, fts_query=fts_query, upto=upto)
    cursor: int | None = None
    while True:
        rows, more = scanner.page(desc=False, cursor=cursor, limit=batch)
        if rows:
            found = records(ledger, rows)
            if fts_query is not None:
                found = [r for r in found if r.payload_status == "present"]
            if visible is not None:
                found = [r for r in found if visible(r)]
            yield found
            cursor = rows[-1][0]
        if not more:
            return


# -- recording access -------------------------------------------------------------------------


def record_access(
    ledger: Ledger,
    actor: Actor,
    action: str,
    filters: Filters,
    extra: dict[str, Any],
) -> Receipt:
    """Record a search or export (fails closed: no record, no results).

    The free text is not kept: it may name a person, and no erasure could find it (the
    search is not about a known subject). The entry holds its keyed pseudonym instead
    (:func:`query_ref`), which tells whether a given text was searched for, and its length."""
    attributes: dict[str, Any] = {"filters": filters.to_json(), "has_q": filters.q is not None}
    if filters.q is not None:
        attributes["q_ref"] = query_ref(ledger, filters.q)
        attributes["q_length"] = len(filters.q)
    attributes.update(extra)
    return ledger.append(
        Event(action, actor, Entity("audit_log", ledger.origin or "ledger"), attributes=attributes)
    )


def query_ref(ledger: Ledger, q: str) -> str:
    """The keyed pseudonym of a search text (HMAC under the ledger's pseudonym key): equal
    for equal texts, unreadable without the key."""
    return ledger.subject_ref(f"audit-query:{q}")


# -- export -----------------------------------------------------------------------------------


PARALLEL_CHUNK = 20_000
"""Seqs per task when an export renders in worker processes."""
PARALLEL_MIN = 100_000
"""The smallest span of seqs worth starting worker processes for (starting them, each one
importing the package, costs about a second)."""
AUTO_WORKERS_MAX = 4


def auto_workers() -> int:
    """The worker processes an export uses by default: one per core this process may run on
    (at most ``AUTO_WORKERS_MAX``)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, AUTO_WORKERS_MAX))


@dataclass
class Export:
    """A streamed export of every matching entry present when it started, oldest first."""

    ledger: Ledger
    filters: Filters
    format: Format
    context: FormatContext
    upto: int
    text_index: IndexState | None = None
    fts_query: str | None = None
    batch: int = 2000
    visible: Visibility | None = None
    count: int = 0
    last_seq: int | None = None

    def _scanner(self) -> Scanner:
        return Scanner(
            self.ledger,
            self.filters,
            watermark=self.text_index.indexed_through if self.text_index else None,
            fts_query=self.fts_query,
            upto=self.upto,
        )

    def chunks(self, *, workers: int | None = None) -> Iterator[bytes]:
        """The export's bytes, in order.

        A large export (a span of at least ``PARALLEL_MIN`` seqs) of the embedded SQLite store
        without a visibility rule renders in ``workers`` worker processes (default: one per
        core, see ``auto_workers``), each reading its own ranges of seqs from the database
        file; otherwise, or with ``workers=1``, in this process. Both give the same bytes."""
        fmt, ctx, end = self.format, self.context, self.format.line_end
        if fmt.header:
            yield (fmt.header + end).encode()
        path = sqlite_path(self.ledger)
        count = auto_workers() if workers is None else workers
        if count > 1 and path is not None and self.visible is None:
            scanner = self._scanner()
            if not scanner.empty and scanner.hi - scanner.lo >= PARALLEL_MIN:
                yield from self._parallel(scanner, path, count)
                return
        for batch in iter_records(
            self.ledger,
            self.filters,
            upto=self.upto,
            batch=self.batch,
            watermark=self.text_index.indexed_through if self.text_index else None,
            fts_query=self.fts_query,
            visible=self.visible,
        ):
            if not batch:
                continue
            self.count += len(batch)
            self.last_seq = batch[-1].seq
            yield fmt.lines(batch, ctx)

    def _parallel(self, scanner: Scanner, path: Any, workers: int) -> Iterator[bytes]:
        """Render ranges of seqs in worker processes, in order. A worker reads its range from
        the database file itself and writes its bytes to a spool file, whose name it returns.
        Sending tens of megabytes back through the pool's pipe instead (pickled, passed 64 KiB
        at a time, unpickled) made two processes slower than one: JSON Lines of 1,000,000
        entries took 60 s against 18 s in a single process; reading a file is one copy."""
        import multiprocessing
        import os
        import tempfile
        from collections import deque
        from concurrent.futures import Future, ProcessPoolExecutor

        ranges = []
        for lo, hi in scanner.ranges(PARALLEL_CHUNK):
            query = scanner.range_sql(lo, hi, desc=False, limit=None)
            if query is not None:
                ranges.append(query)
        if not ranges:
            return
        present_only = bool(self.fts_query)
        # spawn, not fork: the server's threads must not be copied into the workers.
        context = multiprocessing.get_context("spawn")
        with (
            tempfile.TemporaryDirectory(prefix="chatledger-export-") as spool,
            ProcessPoolExecutor(
                max_workers=workers, mp_context=context, initializer=_worker_start
            ) as pool,
        ):
            tasks = (
                (str(path), sql, params, self.format.name, self.context, present_only, out)
                for n, (sql, params) in enumerate(ranges)
                for out in [os.path.join(spool, str(n))]
            )
            pending: deque[Future[tuple[str, int, int | None]]] = deque()
            try:
                for task in itertools.islice(tasks, 2 * workers):
                    pending.append(pool.submit(render_range, task))
                while pending:
                    out, count, last = pending.popleft().result()
                    nxt = next(tasks, None)
                    if nxt is not None:
                        pending.append(pool.submit(render_range, nxt))
                    if count:
                        with open(out, "rb") as spooled:
                            data = spooled.read()
                        os.remove(out)
                        self.count += count
                        self.last_seq = last
                        yield data
            finally:  # an export closed early (a client gone) leaves no queued work behind
                pool.shutdown(wait=True, cancel_futures=True)


_WORKER_CONNECTIONS: dict[str, sqlite3.Connection] = {}
"""Read-only connections of an export worker process (one per database file)."""


def _worker_start() -> None:
    import gc

    # Rendering makes no reference cycles (parsed JSON, bytes, records), and reference
    # counting frees it all: the cycle collector would only walk each batch's parsed entries
    # over and over (some 80,000 objects per batch), so it is off in an export worker, which
    # lives only as long as one export.
    gc.disable()


def render_range(
    task: tuple[str, str, list[Any], str, FormatContext, bool, str],
) -> tuple[str, int, int | None]:
    """In a worker process: render the entries one range query selects into the file
    ``out`` (written only when some entry matched). Returns (out, entries, last seq)."""
    path, sql, params, format_name, ctx, present_only, out = task
    conn = _WORKER_CONNECTIONS.get(path)
    if conn is None:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        _WORKER_CONNECTIONS[path] = conn

    def query(text: str, values: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return conn.execute(text, values).fetchall()

    rows = query(sql, params)  # (seq, body) as int and bytes: SQLite's INTEGER and BLOB
    fmt = get_format(format_name)
    parts = []
    found = 0
    last = None
    # In batches, as in a single-process export, so that parsed entries do not pile up.
    for start in range(0, len(rows), 2000):
        batch = records(query, rows[start : start + 2000])
        if present_only:
            batch = [r for r in batch if r.payload_status == "present"]
        if batch:
            parts.append(fmt.lines(batch, ctx))
            found += len(batch)
            last = batch[-1].seq
    if found:
        with open(out, "wb") as spool:
            spool.writelines(parts)
    return out, found, last


def prepare_export(
    ledger: Ledger,
    filters: Filters,
    fmt: Format,
    context: FormatContext,
    *,
    budget_s: float | None = 2.0,
    visible: Visibility | None = None,
) -> Export:
    state, fts_query = prepare_index(ledger, filters, budget_s=budget_s)
    return Export(
        ledger,
        filters,
        fmt,
        context,
        upto=ledger.size(),
        text_index=state if fts_query is not None or filters.needs_index else None,
        fts_query=fts_query,
        visible=visible,
    )
