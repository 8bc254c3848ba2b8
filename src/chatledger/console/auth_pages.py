"""Login and logout. Failed logins are recorded by the identity service; a login form
carries its own double-submit CSRF token (there is no session yet to bind one to)."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response

from chatledger.api.auth import SESSION_COOKIE, client_ip
from chatledger.console.web import (
    CSRF_FIELD,
    ConsoleRoute,
    Ctx,
    console_ctx,
    platform_of,
    redirect,
    render,
)
from chatledger.errors import Forbidden, Unauthenticated

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

LOGIN_CSRF_COOKIE = "chatledger_login_csrf"
SESSION_SECONDS = 12 * 3600


def safe_next(value: str | None) -> str:
    """Only console paths: never an open redirect."""
    if value and value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"


@router.get("/console/login")
def login_page(request: Request, next: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", {"csrf": token, "next": safe_next(next), "error": ""})
    _set_login_cookie(request, response, token)
    return response


def _set_login_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console/login",
        max_age=3600,
    )


@router.post("/console/login")
def login(
    request: Request,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    platform = platform_of(request)
    ip = client_ip(request)
    platform.abuse.charge("ip", ip or "unknown", None, request.url.path, ip)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        raise Forbidden(
            "the login form expired: reload the page and try again",
            details={"reason": "csrf"},
        )
    try:
        session = platform.identity.login(email, password, ip=ip)
    except Unauthenticated as exc:
        platform.abuse.observe_failed_login(ip)
        token = secrets.token_urlsafe(24)
        page = render(
            request,
            "login.html",
            {"csrf": token, "next": safe_next(next), "error": exc.message, "email": email},
            status_code=401,
        )
        _set_login_cookie(request, page, token)
        return page
    response = redirect(request, safe_next(next))
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
        max_age=SESSION_SECONDS,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@router.post("/console/logout")
def logout(ctx: Annotated[Ctx, Depends(console_ctx)]) -> Response:
    ctx.platform.identity.logout(ctx.session)
    response = redirect(ctx.request, "/console/login?notice=logged_out")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/console")
@router.get("/console/")
def home(ctx: Annotated[Ctx, Depends(console_ctx)]) -> Response:
    return redirect(ctx.request, "/console/chatbots")
