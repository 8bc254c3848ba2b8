"""Analytics with charts; users, roles and API keys; retention and legal holds; rate limits
and guard policy."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from starlette.concurrency import run_in_threadpool

from chatledger.audit.analytics import record_view
from chatledger.console import analytics as console_analytics
from chatledger.console import charts
from chatledger.console.queries import Scope
from chatledger.console.web import ConsoleRoute, Ctx, console_ctx, redirect, render
from chatledger.errors import Forbidden, InvalidInput, NotFound
from chatledger.guard.ratelimit import LIMIT_KINDS
from chatledger.identity.roles import ROLE_PERMISSIONS, Permission, Role
from chatledger.identity.service import require
from chatledger.ledger.entry import Entry
from chatledger.privacy import holds as holds_mod
from chatledger.privacy import retention

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
CtxDep = Annotated[Ctx, Depends(console_ctx)]


# -- analytics ----------------------------------------------------------------------------


@router.get("/console/analytics")
def analytics(ctx: CtxDep, days: int = 30) -> Response:
    require(ctx.principal, Permission.ANALYTICS_READ, "analytics", "*")
    if days not in (7, 30, 90):
        raise InvalidInput("days must be 7, 30 or 90")
    rows = ctx.platform.ledger.store.query(
        "SELECT id FROM chatbots WHERE workspace_id = ? ORDER BY id", (ctx.principal.workspace_id,)
    )
    bots = tuple(str(r[0]) for r in rows)
    ledger = ctx.platform.ledger
    scope = Scope.of(ledger, ctx.principal.workspace_id)
    visible = None if scope.single else (lambda e: scope.visible(e, None))
    data = console_analytics.compute(ledger, bots, days, unscoped_visible=visible)
    record_view(
        ledger,
        ctx.principal.actor,
        "console-dashboard",
        len(data.unanswered) + len(data.feedback_topics),
        data.query,
        via="console",
        workspace_id=scope.workspace_id,
    )
    figures = {
        "unanswered": charts.bars(
            "Unanswered questions by topic",
            ["unanswered"],
            [(topic, [float(n)]) for topic, n, _ in data.unanswered],
        ),
        "feedback_topics": charts.bars(
            "Feedback by topic",
            ["positive", "negative"],
            [(t, [float(p), float(n)]) for t, p, n in data.feedback_topics],
        ),
        "feedback_documents": charts.bars(
            "Feedback by cited document",
            ["positive", "negative"],
            [(d, [float(p), float(n)]) for d, p, n in data.feedback_documents],
        ),
        "conversations": charts.columns(
            "Conversations per day, by resolution",
            list(console_analytics.STATUSES),
            [(d, [float(c) for c in counts]) for d, counts in data.conversations],
        ),
        "outcomes": charts.columns(
            "Outcome tags per day",
            data.outcome_tags,
            [(d, [float(c) for c in counts]) for d, counts in data.outcomes],
        ),
        "security": charts.columns(
            "Security events per day",
            data.security_kinds,
            [(d, [float(c) for c in counts]) for d, counts in data.security],
        ),
    }
    return render(
        ctx.request,
        "analytics.html",
        {"data": data, "figures": figures, "days": days},
        ctx=ctx,
    )


# -- users, roles and API keys ------------------------------------------------------------


def _users(ctx: Ctx) -> list[dict[str, Any]]:
    rows = ctx.platform.ledger.store.query(
        "SELECT u.id, u.email, m.role, u.created_at, u.disabled_at, u.locked_until "
        "FROM users u JOIN memberships m ON m.user_id = u.id WHERE m.workspace_id = ? "
        "ORDER BY u.email",
        (ctx.principal.workspace_id,),
    )
    keys = ("id", "email", "role", "created_at", "disabled_at", "locked_until")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def _users_page(ctx: Ctx, new_key: str = "", status: int = 200) -> Response:
    if not (ctx.can(Permission.USERS_MANAGE) or ctx.can(Permission.AUDIT_READ)):
        raise Forbidden(
            "this role may not see users",
            details={"permission": "users.manage", "entity_type": "user", "entity_id": "*"},
        )
    keys = ctx.platform.identity.api_keys(ctx.principal) if ctx.can(Permission.KEYS_MANAGE) else []
    matrix = [(role.value, [p in ROLE_PERMISSIONS[role] for p in Permission]) for role in Role]
    context = {
        "users": _users(ctx),
        "keys": keys,
        "roles": [r.value for r in Role],
        # Only an owner grants the owner role (the service refuses it to anyone else).
        "grantable": [
            r.value for r in Role if r is not Role.OWNER or ctx.principal.role is Role.OWNER
        ],
        "permissions": [p.value for p in Permission],
        "matrix": matrix,
        "new_key": new_key,
        "manage_users": ctx.can(Permission.USERS_MANAGE),
        "manage_keys": ctx.can(Permission.KEYS_MANAGE),
    }
    return render(ctx.request, "users.html", context, ctx=ctx, status_code=status)


@router.get("/console/admin/users")
def users(ctx: CtxDep) -> Response:
    return _users_page(ctx)


async def _form(ctx: Ctx) -> dict[str, str]:
    form = await ctx.request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.post("/console/admin/users")
async def create_user(ctx: CtxDep) -> Response:
    form = await _form(ctx)
    await run_in_threadpool(
        lambda: ctx.platform.identity.create_user(
            ctx.principal,
            email=form.get("email", ""),
            password=form.get("password", ""),
            role=form.get("role", ""),
        )
    )
    return redirect(ctx.request, "/console/admin/users?notice=user_created")


@router.post("/console/admin/users/{user_id}/role")
async def set_role(user_id: str, ctx: CtxDep) -> Response:
    form = await _form(ctx)
    await run_in_threadpool(
        ctx.platform.identity.set_role, ctx.principal, user_id, form.get("role", "")
    )
    return redirect(ctx.request, "/console/admin/users?notice=role_changed")


@router.post("/console/admin/keys")
async def create_key(ctx: CtxDep) -> Response:
    form = await _form(ctx)
    days = form.get("expires_in_days", "").strip()
    if days and not days.isdigit():
        raise InvalidInput("expires_in_days must be a whole number of days")
    token, _ = await run_in_threadpool(
        lambda: ctx.platform.identity.create_api_key(
            ctx.principal,
            role=form.get("role", ""),
            name=form.get("name", ""),
            expires_in_days=int(days) if days else None,
        )
    )
    return _users_page(ctx, new_key=token, status=201)


@router.post("/console/admin/keys/{key_id}/revoke")
async def revoke_key(key_id: str, ctx: CtxDep) -> Response:
    await run_in_threadpool(ctx.platform.identity.revoke_api_key, ctx.principal, key_id)
    return redirect(ctx.request, "/console/admin/users?notice=key_revoked")


# -- retention and legal holds ------------------------------------------------------------

ERASURE_ACTIONS = ("privacy.subject_erased", "privacy.retention_expired")


def _recent(ctx: Ctx, actions: tuple[str, ...], limit: int = 50) -> list[Entry]:
    ledger = ctx.platform.ledger
    scope = Scope.of(ledger, ctx.principal.workspace_id)
    marks = ",".join("?" * len(actions))
    rows = ledger.store.query(
        f"SELECT seq, chatbot_id, body FROM ledger_entries WHERE action IN ({marks}) "
        "ORDER BY seq DESC LIMIT ?",
        (*actions, limit * 4),
    )
    found = []
    for seq, bot, body in rows:
        entry = Entry.parse(bytes(body), int(seq))
        if scope.visible(entry, bot):
            found.append(entry)
    return found[:limit]


def _privacy_reader(ctx: Ctx) -> None:
    if not (ctx.can(Permission.PRIVACY_MANAGE) or ctx.can(Permission.AUDIT_READ)):
        raise Forbidden(
            "this role may not see retention and legal holds",
            details={"permission": "privacy.manage", "entity_type": "privacy", "entity_id": "*"},
        )


@router.get("/console/admin/privacy")
def privacy(ctx: CtxDep) -> Response:
    """Retention policies in force (defaults, for all chatbots, per chatbot), legal holds,
    and the latest erasures; editable with the privacy.manage permission."""
    _privacy_reader(ctx)
    ledger = ctx.platform.ledger
    found = retention.policies(ledger)
    bots = ctx.platform.chatbots.list_chatbots(ctx.principal, limit=200)
    bot_ids = {b.id for b in bots}
    holds = holds_mod.list_holds(
        ledger, status="all", workspace_id=ctx.principal.workspace_id, limit=200
    )
    return render(
        ctx.request,
        "privacy.html",
        {
            "policies": found.effective(),
            "overrides": [p for p in found.chatbot_overrides() if p.chatbot_id in bot_ids],
            "rules": retention.RULES,
            "defaults": retention.DEFAULT_DAYS,
            "holds": holds,
            "bots": bots,
            "scope_types": holds_mod.SCOPE_TYPES,
            "erasures": _recent(ctx, ERASURE_ACTIONS),
            "manage": ctx.can(Permission.PRIVACY_MANAGE),
        },
        ctx=ctx,
    )


@router.post("/console/admin/privacy/retention")
async def set_retention(ctx: CtxDep) -> Response:
    form = await _form(ctx)
    rule = form.get("rule", "")
    require(ctx.principal, Permission.PRIVACY_MANAGE, "retention_policy", rule)
    chatbot_id = form.get("chatbot_id") or None
    if chatbot_id:
        ctx.platform.chatbots.get(ctx.principal, chatbot_id)  # in this workspace
    days_text = form.get("days", "").strip()
    if days_text and not days_text.isdigit():
        raise InvalidInput("days must be a whole number (or empty to keep forever)")
    reset = form.get("reset") == "1"
    await run_in_threadpool(
        lambda: retention.set_policy(
            ctx.platform.ledger,
            ctx.principal.actor,
            rule,
            int(days_text) if days_text else None,
            chatbot_id=chatbot_id,
            reset=reset,
        )
    )
    return redirect(ctx.request, "/console/admin/privacy?notice=saved_policy")


@router.post("/console/admin/privacy/holds")
async def place_hold(ctx: CtxDep) -> Response:
    form = await _form(ctx)
    scope_type = form.get("scope_type", "")
    target = form.get("target", "").strip()
    require(ctx.principal, Permission.PRIVACY_MANAGE, "legal_hold", target or "new")
    if scope_type == "conversation":
        ctx.platform.chat.get(ctx.principal, target)
    elif scope_type == "chatbot":
        ctx.platform.chatbots.get(ctx.principal, target)
    holds_mod.install(ctx.platform)
    await run_in_threadpool(
        lambda: holds_mod.place_hold(
            ctx.platform.ledger,
            ctx.principal.actor,
            scope_type=scope_type,
            target=target,
            reason=form.get("reason", ""),
            reference=form.get("reference") or None,
            workspace_id=ctx.principal.workspace_id,
        )
    )
    return redirect(ctx.request, "/console/admin/privacy?notice=hold_placed")


@router.post("/console/admin/privacy/holds/{hold_id}/release")
async def release_hold(hold_id: str, ctx: CtxDep) -> Response:
    form = await _form(ctx)
    require(ctx.principal, Permission.PRIVACY_MANAGE, "legal_hold", hold_id)
    hold = holds_mod.get_hold(ctx.platform.ledger, hold_id)
    if hold.workspace_id is not None and hold.workspace_id != ctx.principal.workspace_id:
        raise NotFound(f"no legal hold {hold_id}")
    await run_in_threadpool(
        holds_mod.release_hold,
        ctx.platform.ledger,
        ctx.principal.actor,
        hold_id,
        form.get("reason", ""),
    )
    return redirect(ctx.request, "/console/admin/privacy?notice=hold_released")


# -- rate limits and guard policy ---------------------------------------------------------


@router.get("/console/admin/guard")
def guard(ctx: CtxDep) -> Response:
    require(ctx.principal, Permission.CHATBOT_READ, "chatbot", "*")
    limiter = ctx.platform.abuse.limiter
    limits = [(kind, limiter.limit(kind)) for kind in LIMIT_KINDS]
    bots = ctx.platform.chatbots.list_chatbots(ctx.principal, limit=200)
    recent = (
        _recent(
            ctx,
            (
                "guard.injection_detected",
                "guard.request_blocked",
                "guard.rate_limited",
                "guard.anomaly",
            ),
            limit=20,
        )
        if ctx.can(Permission.AUDIT_READ)
        else []
    )
    return render(
        ctx.request,
        "guard.html",
        {
            "limits": limits,
            "bots": bots,
            "recent": recent,
            "editable": ctx.can(Permission.CHATBOT_WRITE),
        },
        ctx=ctx,
    )
