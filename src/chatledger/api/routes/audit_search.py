"""``/audit/events`` (search) and ``/audit/export`` (streamed exports in SIEM formats)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from chatledger.api.auth import CurrentPrincipal, PlatformDep
from chatledger.audit.formats import FORMAT_NAMES, ExportRecord, FormatContext, get_format
from chatledger.audit.search import (
    Filters,
    Visibility,
    prepare_export,
    record_access,
    search,
)
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission
from chatledger.identity.service import require
from chatledger.ledger.entry import Entry
from chatledger.platform import Platform

router = APIRouter(tags=["audit"])

From = Annotated[
    str | None,
    Query(alias="from", description="ISO 8601 UTC date or date-time, inclusive"),
]
To = Annotated[str | None, Query(description="ISO 8601 UTC date or date-time, exclusive")]
ActorQ = Annotated[str | None, Query(description="actor id")]
RoleQ = Annotated[str | None, Query(description="actor role (comma-separated for several)")]
ActionQ = Annotated[
    str | None,
    Query(description="action, or a prefix such as 'guard.*' (comma-separated for several)"),
]
CategoryQ = Annotated[str | None, Query(description="event category (comma-separated)")]
OutcomeQ = Annotated[str | None, Query(description="outcome (comma-separated)")]
SeverityQ = Annotated[
    str | None, Query(description="attributes.severity of security events (comma-separated)")
]
TextQ = Annotated[
    str | None,
    Query(description="full text over message, answer and feedback text that is not erased"),
]


def _visibility(platform: Platform, principal: Principal) -> Visibility | None:
    """On a deployment with several workspaces, a caller sees its own workspace's entries
    (the console's rule: its chatbots, its people, entries naming it)."""
    from chatledger.console.queries import Scope

    scope = Scope.of(platform.ledger, principal.workspace_id)
    if scope.single:
        return None

    def visible(record: ExportRecord) -> bool:
        entry = Entry.parse(record.body, record.seq)
        chatbot = entry.attributes.get("chatbot_id")
        return scope.visible(entry, chatbot if isinstance(chatbot, str) else None)

    return visible


def _filters(
    start: str | None,
    end: str | None,
    actor: str | None,
    role: str | None,
    action: str | None,
    category: str | None,
    entity_type: str | None,
    entity_id: str | None,
    chatbot_id: str | None,
    conversation_id: str | None,
    outcome: str | None,
    severity: str | None,
    q: str | None,
) -> Filters:
    return Filters.parse(
        start=start,
        end=end,
        actor=actor,
        role=role,
        action=action,
        category=category,
        entity_type=entity_type,
        entity_id=entity_id,
        chatbot_id=chatbot_id,
        conversation_id=conversation_id,
        outcome=outcome,
        severity=severity,
        q=q,
    )


@router.get("/audit/events")
def search_events(
    principal: CurrentPrincipal,
    platform: PlatformDep,
    start: From = None,
    to: To = None,
    actor: ActorQ = None,
    role: RoleQ = None,
    action: ActionQ = None,
    category: CategoryQ = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    chatbot_id: str | None = None,
    conversation_id: str | None = None,
    outcome: OutcomeQ = None,
    severity: SeverityQ = None,
    q: TextQ = None,
    order: Annotated[str, Query(description="newest or oldest")] = "newest",
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(description="1 to 200")] = 50,
) -> dict[str, Any]:
    """Search the ledger. Items are the entries as recorded plus their payload status; a
    full-text match carries a highlighted snippet, never the payload. Every search is
    recorded as an ``audit.search`` event."""
    require(principal, Permission.AUDIT_READ, "ledger", "events")
    filters = _filters(
        start,
        to,
        actor,
        role,
        action,
        category,
        entity_type,
        entity_id,
        chatbot_id,
        conversation_id,
        outcome,
        severity,
        q,
    )
    page = search(
        platform.ledger,
        filters,
        order=order,
        cursor=cursor,
        limit=limit,
        visible=_visibility(platform, principal),
    )
    record_access(
        platform.ledger,
        principal.actor,
        "audit.search",
        filters,
        {
            "order": order,
            "limit": limit,
            "cursor": cursor,
            "results": len(page.items),
            "has_more": page.next_cursor is not None,
            "via": "api",
        },
    )
    return page.to_json()


@router.get("/audit/export")
async def export_events(
    principal: CurrentPrincipal,
    platform: PlatformDep,
    format: Annotated[str, Query(description=", ".join(FORMAT_NAMES))] = "jsonl",
    start: From = None,
    to: To = None,
    actor: ActorQ = None,
    role: RoleQ = None,
    action: ActionQ = None,
    category: CategoryQ = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    chatbot_id: str | None = None,
    conversation_id: str | None = None,
    outcome: OutcomeQ = None,
    severity: SeverityQ = None,
    q: TextQ = None,
) -> StreamingResponse:
    """Stream every matching entry present when the export starts, oldest first, in one of
    the SIEM formats (payload content is never exported). Recorded as ``audit.export``."""
    require(principal, Permission.AUDIT_EXPORT, "ledger", "export")
    fmt = get_format(format)
    filters = _filters(
        start,
        to,
        actor,
        role,
        action,
        category,
        entity_type,
        entity_id,
        chatbot_id,
        conversation_id,
        outcome,
        severity,
        q,
    )
    ledger = platform.ledger
    visible = await run_in_threadpool(_visibility, platform, principal)
    exporter = await run_in_threadpool(
        lambda: prepare_export(
            ledger, filters, fmt, FormatContext(origin=ledger.origin), visible=visible
        )
    )
    await run_in_threadpool(
        record_access,
        ledger,
        principal.actor,
        "audit.export",
        filters,
        {"format": fmt.name, "upto_seq": exporter.upto - 1, "via": "api"},
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "Content-Disposition": f'attachment; filename="chatledger-audit-{stamp}.{fmt.extension}"',
        "X-ChatLedger-Upto-Seq": str(exporter.upto - 1),
    }
    if exporter.text_index is not None:
        headers["X-ChatLedger-Text-Index-Complete"] = str(exporter.text_index.complete).lower()
    return StreamingResponse(exporter.chunks(), media_type=fmt.media_type, headers=headers)
