"""``/analytics``: reports computed from the ledger, as JSON or CSV (``?format=csv``). Every
report takes ``chatbot_id``, ``from`` and ``to`` (ISO 8601; a bare date is a whole day) and
needs the analytics.read permission; it covers the caller's workspace only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse

from chatledger.api.auth import CurrentPrincipal, PlatformDep
from chatledger.audit.analytics import (
    DESCRIPTIONS,
    REPORTS,
    AnalyticsQuery,
    record_view,
    run_report,
)
from chatledger.console.queries import Scope
from chatledger.errors import NotFound
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission
from chatledger.identity.service import require, same_workspace
from chatledger.platform import Platform

router = APIRouter(tags=["analytics"])

ChatbotParam = Query(None, max_length=200, description="One chatbot (default: all of them).")
FromParam = Query(None, alias="from", max_length=40, description="Start (ISO 8601, UTC).")
ToParam = Query(None, max_length=40, description="End, inclusive (a bare date: the whole day).")
FormatParam = Query("json", pattern="^(json|csv)$", description="json or csv.")
LimitParam = Query(50, ge=1, le=10_000, description="Rows of ranked reports.")


def _scope(platform: Platform, principal: Principal, chatbot_id: str | None) -> tuple[str, ...]:
    if chatbot_id:
        bot = platform.chatbots.find(chatbot_id, include_deleted=True)
        if bot is None:
            raise NotFound(f"no chatbot {chatbot_id}")
        same_workspace(principal, bot.workspace_id, "chatbot", chatbot_id)
        return (chatbot_id,)
    rows = platform.ledger.store.query(
        "SELECT id FROM chatbots WHERE workspace_id = ? ORDER BY id", (principal.workspace_id,)
    )
    return tuple(str(r[0]) for r in rows)


def _run(
    name: str,
    principal: Principal,
    platform: Platform,
    chatbot_id: str | None,
    start: str | None,
    end: str | None,
    format: str,
    limit: int,
) -> Any:
    require(principal, Permission.ANALYTICS_READ, "analytics", name)
    scope = Scope.of(platform.ledger, principal.workspace_id)
    query = AnalyticsQuery(
        chatbot_ids=_scope(platform, principal, chatbot_id),
        start=start,
        end=end,
        include_unscoped=chatbot_id is None,
        limit=limit,
        unscoped_visible=None if scope.single else (lambda e: scope.visible(e, None)),
    )
    report = run_report(platform.ledger, name, query)
    record_view(
        platform.ledger,
        principal.actor,
        name,
        len(report.rows),
        query,
        via="api",
        workspace_id=scope.workspace_id,
    )
    if format == "csv":
        return PlainTextResponse(
            report.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return report.to_json(query)


@router.get("/analytics")
def list_reports(principal: CurrentPrincipal) -> dict[str, Any]:
    """The reports available under ``/analytics/{report}``."""
    require(principal, Permission.ANALYTICS_READ, "analytics", "list")
    return {"items": [{"name": k, "description": DESCRIPTIONS[k]} for k in REPORTS]}


@router.get("/analytics/{report}", response_model=None)
def report(
    report: str,
    principal: CurrentPrincipal,
    platform: PlatformDep,
    chatbot_id: str | None = ChatbotParam,
    start: str | None = FromParam,
    to: str | None = ToParam,
    format: str = FormatParam,
    limit: int = LimitParam,
) -> Response | dict[str, Any]:
    """One report: ``unanswered`` (questions by topic), ``feedback-topics``,
    ``feedback-documents``, ``outcomes`` (resolution and outcome rates per day),
    ``cited-documents``, ``uncited-documents``, ``security`` (events per day by kind)."""
    if report not in REPORTS:
        raise NotFound(f"no report {report!r}: use one of {', '.join(REPORTS)}")
    result: Response | dict[str, Any] = _run(
        report, principal, platform, chatbot_id, start, to, format, limit
    )
    return result
