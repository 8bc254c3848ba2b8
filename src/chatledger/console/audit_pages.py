"""The audit explorer (filters, full-text search, paging, an event's detail with its
before/after diff and links), conversation replay with sources as they were, and the
download of a conversation's evidence pack."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from chatledger.api.routes.evidence import workspace_filter
from chatledger.audit.evidence import Custodian, EvidenceScope, build_evidence_pack
from chatledger.audit.formats import ExportRecord
from chatledger.audit.search import Filters as SearchFilters
from chatledger.audit.search import Visibility, record_access
from chatledger.audit.search import search as search_events
from chatledger.audit.textindex import Match
from chatledger.chat.replay import record_tampering, replay_conversation
from chatledger.console import diffs
from chatledger.console.queries import Scope
from chatledger.console.web import ConsoleRoute, Ctx, console_ctx, redirect, render
from chatledger.errors import InvalidInput, NotFound
from chatledger.events import ACTIONS, Category, Entity, Event, Outcome
from chatledger.identity.roles import Permission, Role
from chatledger.identity.service import require
from chatledger.ledger.entry import Entry
from chatledger.ledger.service import Ledger

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
CtxDep = Annotated[Ctx, Depends(console_ctx)]
PAGE = 50


def links(entry: Entry, chatbot_id: str | None) -> list[tuple[str, str]]:
    """Where an event leads: its conversation, document, chatbot, user or key."""
    attrs = entry.attributes
    out: list[tuple[str, str]] = []
    conversation = attrs.get("conversation_id")
    if entry.entity.get("type") == "conversation":
        conversation = entry.entity.get("id")
    bot = chatbot_id or attrs.get("chatbot_id")
    if isinstance(conversation, str):
        out.append(("Conversation " + conversation, f"/console/conversations/{conversation}"))
    document = attrs.get("document_id")
    if isinstance(document, str) and isinstance(bot, str):
        out.append(("Document " + document, f"/console/chatbots/{bot}/documents#doc-{document}"))
    if isinstance(bot, str):
        out.append(("Chatbot " + bot, f"/console/chatbots/{bot}"))
    for who in (entry.actor, entry.entity):
        kind, ident = who.get("type"), str(who.get("id"))
        if kind == "user":
            out.append(("User " + ident, f"/console/admin/users#user-{ident}"))
        elif kind == "api_key":
            out.append(("API key " + ident, f"/console/admin/users#key-{ident}"))
    unique: dict[str, tuple[str, str]] = {}
    for item in out:
        unique.setdefault(item[1], item)
    return list(unique.values())


def user_emails(ctx: Ctx, ids: set[str]) -> dict[str, str]:
    wanted = sorted(i for i in ids if i.startswith("usr_"))
    if not wanted:
        return {}
    marks = ",".join("?" * len(wanted))
    rows = ctx.platform.ledger.store.query(
        f"SELECT id, email FROM users WHERE id IN ({marks})", tuple(wanted)
    )
    return {str(r[0]): str(r[1]) for r in rows}


def _record(ctx: Ctx, action: str, entity: Entity, attributes: dict[str, Any], **kw: Any) -> None:
    ctx.platform.ledger.append(
        Event(action, ctx.principal.actor, entity, Outcome.SUCCESS, attributes=attributes, **kw)
    )


def visibility(ledger: Ledger, workspace_id: str) -> Visibility | None:
    """On a deployment with several workspaces, only this workspace's entries."""
    scope = Scope.of(ledger, workspace_id)
    if scope.single:
        return None

    def visible(record: ExportRecord) -> bool:
        chatbot = record.entry.get("attributes", {}).get("chatbot_id")
        entry = Entry.parse(record.body, record.seq)
        return scope.visible(entry, chatbot if isinstance(chatbot, str) else None)

    return visible


def highlighted(match: Match | None) -> list[tuple[str, bool]]:
    """A search snippet as (text, is_match) segments, for <mark>."""
    if match is None:
        return []
    out: list[tuple[str, bool]] = []
    pos = 0
    for start, end in match.highlights:
        if start > pos:
            out.append((match.snippet[pos:start], False))
        out.append((match.snippet[start:end], True))
        pos = end
    if pos < len(match.snippet):
        out.append((match.snippet[pos:], False))
    return out


@dataclass
class ExplorerForm:
    q: str = ""
    action: str = ""
    category: str = ""
    outcome: str = ""
    chatbot: str = ""
    actor: str = ""
    role: str = ""
    conversation: str = ""
    entity: str = ""
    since: str = ""
    until: str = ""

    def active(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}

    def filters(self) -> SearchFilters:
        entity_type, entity_id = None, self.entity or None
        if ":" in self.entity:
            kind, _, ident = self.entity.partition(":")
            entity_type, entity_id = kind or None, ident or None
        end = None
        if self.until:
            try:
                end = (date.fromisoformat(self.until) + timedelta(days=1)).isoformat()
            except ValueError:
                raise InvalidInput("'to day' must be a date like 2026-01-31") from None
        return SearchFilters.parse(
            start=self.since or None,
            end=end,
            actor=self.actor or None,
            role=self.role or None,
            action=self.action or None,
            category=self.category or None,
            entity_type=entity_type,
            entity_id=entity_id,
            chatbot_id=self.chatbot or None,
            conversation_id=self.conversation or None,
            outcome=self.outcome or None,
            q=self.q or None,
        )


@router.get("/console/audit")
def explorer(
    ctx: CtxDep,
    q: str = "",
    action: str = "",
    category: str = "",
    outcome: str = "",
    chatbot: str = "",
    actor: str = "",
    role: str = "",
    conversation: str = "",
    entity: str = "",
    since: str = "",
    until: str = "",
    before: int | None = None,
    after: int | None = None,
) -> Response:
    """Filters, full-text search (over message, answer and feedback text), and paging by
    seq: ``before`` shows older entries, ``after`` newer ones. Each search is recorded."""
    require(ctx.principal, Permission.AUDIT_READ, "ledger", "search")
    given = {
        "q": q,
        "action": action,
        "category": category,
        "outcome": outcome,
        "chatbot": chatbot,
        "actor": actor,
        "role": role,
        "conversation": conversation,
        "entity": entity,
        "since": since,
        "until": until,
    }
    form = ExplorerForm(**{k: v.strip()[:300] for k, v in given.items()})
    filters = form.filters()
    ledger = ctx.platform.ledger
    ascending = after is not None and before is None
    cursor = after if ascending else before
    page = search_events(
        ledger,
        filters,
        order="oldest" if ascending else "newest",
        cursor=None if cursor is None else str(cursor),
        limit=PAGE,
        visible=visibility(ledger, ctx.principal.workspace_id),
    )
    items = list(reversed(page.items)) if ascending else list(page.items)
    record_access(
        ledger,
        ctx.principal.actor,
        "audit.search",
        filters,
        {"via": "console", "results": len(items), "cursor": cursor, "order": page.order},
    )
    more = page.next_cursor is not None
    newer: int | None = None
    older: int | None = None
    if ascending:
        newer = int(page.next_cursor) if more and page.next_cursor else None
        older = items[-1].seq if items else (after or 0) + 1
    else:
        older = int(page.next_cursor) if more and page.next_cursor else None
        if before is not None:
            newer = items[0].seq if items else before - 1
    actors = {str(i.entry.get("actor", {}).get("id")) for i in items}
    active = form.active()
    return render(
        ctx.request,
        "audit.html",
        {
            "form": form,
            "rows": [(i.entry, highlighted(i.match), i.payload_status) for i in items],
            "newer": newer,
            "older": older,
            "text_index": page.text_index,
            "emails": user_emails(ctx, actors),
            "actions": sorted(ACTIONS),
            "categories": [c.value for c in Category],
            "outcomes": [o.value for o in Outcome],
            "roles": [r.value for r in Role],
            "bots": ctx.platform.chatbots.list_chatbots(ctx.principal, limit=200),
            "query": urlencode(active),
            "filter_items": active,
        },
        ctx=ctx,
    )


@router.get("/console/audit/events/{seq}")
def event(seq: int, ctx: CtxDep) -> Response:
    require(ctx.principal, Permission.AUDIT_READ, "ledger", str(seq))
    ledger = ctx.platform.ledger
    if not 0 <= seq < ledger.size():
        raise NotFound(f"no ledger entry with seq {seq}")
    rows = ledger.store.query(
        "SELECT chatbot_id, leaf_hash FROM ledger_entries WHERE seq = ?", (seq,)
    )
    chatbot_id, leaf_hash = rows[0]
    record = ledger.read(seq)
    scope = Scope.of(ledger, ctx.principal.workspace_id)
    if not scope.visible(record.entry, chatbot_id):
        raise NotFound(f"no ledger entry with seq {seq}")
    _record(
        ctx,
        "audit.search",
        Entity("ledger_entry", str(seq)),
        {"seq": seq, "view": "event", "via": "console"},
    )
    entry = record.entry
    ids = {str(entry.actor.get("id")), str(entry.entity.get("id"))}
    return render(
        ctx.request,
        "event.html",
        {
            "record": record,
            "entry": entry,
            "leaf_hash": bytes(leaf_hash).hex(),
            "links": links(entry, chatbot_id),
            "changes": diffs.before_after(entry.attributes, record.payload),
            "emails": user_emails(ctx, ids),
            "attributes_json": _pretty(entry.attributes),
            "payload_json": _pretty(record.payload) if record.payload is not None else "",
            "body": entry.body.decode("utf-8", "replace"),
        },
        ctx=ctx,
    )


def _pretty(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


# -- replay and evidence ------------------------------------------------------------------


@router.get("/console/conversations/{conversation_id}")
def replay(conversation_id: str, ctx: CtxDep) -> Response:
    platform = ctx.platform
    # Counted before the lookup: probing ids that do not exist is enumeration too.
    platform.abuse.observe_access(ctx.principal, "conversation", conversation_id)
    conv = platform.chat.get(ctx.principal, conversation_id)
    require(ctx.principal, Permission.CONVERSATION_READ, "conversation", conversation_id)
    result = replay_conversation(platform.ledger, conv.id)
    _record(
        ctx,
        "conversation.view",
        Entity("conversation", conv.id),
        {"chatbot_id": conv.chatbot_id, "conversation_id": conv.id, "via": "console"},
    )
    record_tampering(platform.ledger, result, ctx.principal.actor, "console")
    actors = {str(m.get("actor", {}).get("id")) for m in result["messages"]}
    return render(
        ctx.request,
        "replay.html",
        {
            "conv": conv,
            "replay": result,
            "emails": user_emails(ctx, actors | {str(conv.user_id)}),
            "can_export": ctx.can(Permission.AUDIT_EXPORT),
        },
        ctx=ctx,
    )


@router.post("/console/conversations/{conversation_id}/status")
async def conversation_status(conversation_id: str, ctx: CtxDep) -> Response:
    """Set a conversation's resolution and outcome tags (recorded with who set them)."""
    form = await ctx.request.form()
    changes: dict[str, Any] = {}
    resolution = form.get("resolution")
    if isinstance(resolution, str) and resolution:
        changes["resolution"] = resolution
    tags = form.get("outcome_tags")
    if isinstance(tags, str):
        changes["outcome_tags"] = sorted({t.strip() for t in tags.split(",") if t.strip()})
    if form.get("ended") == "on":
        changes["ended"] = True
    await run_in_threadpool(ctx.platform.chat.update, ctx.principal, conversation_id, changes)
    return redirect(ctx.request, f"/console/conversations/{conversation_id}?notice=status_saved")


@router.post("/console/conversations/{conversation_id}/evidence")
async def evidence(conversation_id: str, ctx: CtxDep) -> Response:
    """The conversation's evidence pack (chatledger.audit.evidence): the replay as JSON and
    HTML, its ledger entries with inclusion proofs to a signed checkpoint, the verifier key,
    payloads, a chain-of-custody record and a signed manifest. The export is recorded
    (``audit.evidence``) before the pack is built."""
    platform = ctx.platform
    require(ctx.principal, Permission.AUDIT_EXPORT, "evidence", conversation_id)
    conv = platform.chat.get(ctx.principal, conversation_id)
    form = await ctx.request.form()
    reason = form.get("reason")
    custodian = Custodian(
        ctx.principal.actor,
        "console",
        reason.strip()[:2000] if isinstance(reason, str) else "",
        {"request_id": str(getattr(ctx.request.state, "request_id", ""))},
    )
    folder = Path(tempfile.mkdtemp(prefix="chatledger-evidence-"))
    try:
        out = folder / "evidence.zip"
        result = await run_in_threadpool(
            lambda: build_evidence_pack(
                platform.ledger,
                EvidenceScope(conversation_id=conv.id),
                custodian,
                out,
                entry_filter=workspace_filter(platform, ctx.principal),
            )
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        out,
        media_type="application/zip",
        filename=f"evidence-{conv.id}-{result.pack_id}.zip",
        headers={"X-Evidence-Pack": result.pack_id, "X-Ledger-Seq": str(result.event_seq)},
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
