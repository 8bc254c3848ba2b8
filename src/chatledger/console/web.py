"""The console's plumbing: templates, the signed-in user, CSRF, security headers, and one
error path that renders HTML (and records refused actions as ``access.denied``)."""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from chatledger.api.auth import CSRF_HEADER, SESSION_COOKIE, client_ip
from chatledger.errors import ChatLedgerError, Forbidden, RateLimited, Unauthenticated
from chatledger.events import Actor, Entity, Event, Outcome
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission
from chatledger.identity.service import Session
from chatledger.platform import Platform

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
CSRF_FIELD = "csrf_token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def format_ts(value: Any) -> str:
    """``2026-11-28T14:47:19.123456Z`` as ``2026-11-28 14:47:19 UTC``."""
    text = str(value or "")
    if len(text) >= 19 and text[10] == "T":
        return f"{text[:10]} {text[11:19]} UTC"
    return text


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html", "svg"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short"] = lambda value, n=12: (
        (str(value)[:n] + "…") if len(str(value)) > n else value
    )
    env.filters["ts"] = format_ts
    env.filters["pct"] = lambda value: "–" if value is None else f"{float(value) * 100:.0f}%"
    env.filters["urlq"] = lambda value: quote(str(value), safe="")
    return env


TEMPLATES = _environment()


class LoginRequired(Exception):
    """No valid console session: the browser is sent to the login page."""


@dataclass
class Ctx:
    """One console request: the platform and the signed-in user's session."""

    request: Request
    platform: Platform
    session: Session

    @property
    def principal(self) -> Principal:
        return self.session.principal

    @property
    def csrf(self) -> str:
        return self.session.csrf_token

    def can(self, permission: Permission | str) -> bool:
        return self.principal.can(Permission(permission))

    @property
    def htmx(self) -> bool:
        return is_htmx(self.request)

    @property
    def email(self) -> str:
        rows = self.platform.ledger.store.query(
            "SELECT email FROM users WHERE id = ?", (self.principal.actor.id,)
        )
        return str(rows[0][0]) if rows else self.principal.actor.id


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def console_ctx(request: Request) -> Ctx:
    """The signed-in user, charged to the IP's rate limit (and, for changes, the session's);
    unsafe methods must carry the session's CSRF token (header or form field)."""
    platform = platform_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired
    ip = client_ip(request)
    path = request.url.path
    platform.abuse.charge("ip", ip or "unknown", None, path, ip)
    try:
        session = platform.identity.authenticate_session(token, ip=ip)
    except Unauthenticated:
        raise LoginRequired from None
    request.state.principal = session.principal
    if request.method in UNSAFE:
        principal = session.principal
        platform.abuse.charge(
            "session", principal.credential_id or principal.actor.id, principal.actor, path, ip
        )
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent:
            form = await request.form()
            field = form.get(CSRF_FIELD)
            sent = field if isinstance(field, str) else ""
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise Forbidden("missing or wrong CSRF token", details={"reason": "csrf"})
    platform.abuse.observe_request(session.principal, path)
    return Ctx(request, platform, session)


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    ctx: Ctx | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    values: dict[str, Any] = {
        "request": request,
        "ctx": ctx,
        "P": Permission,
        "path": request.url.path,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
    }
    values.update(context)
    html = TEMPLATES.get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code, headers=headers)


NOTICES = {
    "created": "Created.",
    "saved": "Saved: a new configuration version is in force.",
    "unchanged": "Nothing changed.",
    "deleted": "Deleted.",
    "logged_out": "You are logged out.",
    "user_created": "User created.",
    "role_changed": "Role changed.",
    "key_revoked": "API key revoked.",
    "saved_policy": "Retention policy saved.",
    "hold_placed": "Legal hold placed.",
    "hold_released": "Legal hold released.",
    "status_saved": "Conversation updated.",
}


def redirect(request: Request, url: str) -> Response:
    """A redirect that works for plain form posts (303) and for htmx (HX-Redirect)."""
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def record_denied(request: Request, exc: Forbidden) -> None:
    """Record a refused console action, as the API's error handler does for the API."""
    platform = platform_of(request)
    principal = getattr(request.state, "principal", None)
    ip = client_ip(request)
    actor = principal.actor if principal is not None else Actor("anonymous", ip or "unknown")
    with contextlib.suppress(ChatLedgerError):
        platform.ledger.append(
            Event(
                "access.denied",
                actor,
                Entity("http_request", f"{request.method} {request.url.path}"[:200]),
                Outcome.DENIED,
                attributes={
                    "reason": exc.message,
                    **exc.details,
                    "method": request.method,
                    "path": request.url.path[:500],
                    "via": "console",
                    "request_id": str(getattr(request.state, "request_id", "")),
                },
                payload={"ip": ip, "user_agent": request.headers.get("user-agent", "")[:300]},
            )
        )


def error_response(request: Request, status: int, title: str, message: str) -> Response:
    template = "_error.html" if is_htmx(request) else "error.html"
    return render(
        request,
        template,
        {"status": status, "title": title, "message": message},
        status_code=status,
    )


class ConsoleRoute(APIRoute):
    """Console routes answer errors with an HTML page (or an htmx fragment), not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except LoginRequired:
                if request.url.path.startswith("/widget/"):
                    return error_response(request, 401, "unauthenticated", "not allowed")
                target = "/console/login"
                if request.method == "GET" and request.url.path != "/console/":
                    target += "?next=" + quote(request.url.path, safe="")
                return redirect(request, target)
            except Forbidden as exc:
                record_denied(request, exc)
                return error_response(request, 403, "Not allowed", exc.message)
            except RateLimited as exc:
                response = error_response(request, 429, "Too many requests", exc.message)
                response.headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
                return response
            except ChatLedgerError as exc:
                return error_response(request, exc.status, _title(exc.status), exc.message)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                    for e in exc.errors()[:5]
                )
                return error_response(request, 422, "Invalid request", problems)

        return handler


def _title(status: int) -> str:
    return {
        400: "Bad request",
        401: "Not signed in",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        422: "Invalid input",
    }.get(status, "Error")


# -- security headers ---------------------------------------------------------------------

CONSOLE_PREFIXES = ("/console", "/widget")


def security_headers(response: Response, path: str) -> None:
    headers = response.headers
    if "content-security-policy" not in headers:
        headers["Content-Security-Policy"] = CSP
        headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    if path.startswith("/console/static/"):
        headers.setdefault("Cache-Control", "public, max-age=3600")
    else:
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Cache-Control", "no-store")


def headers_middleware() -> Callable[
    [Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]
]:
    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        path = request.url.path
        if path.startswith(CONSOLE_PREFIXES) or path == "/widget.js":
            security_headers(response, path)
        return response

    return middleware
