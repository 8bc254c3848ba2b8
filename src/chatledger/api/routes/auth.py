"""``/auth/login`` and ``/auth/logout``: console and API sessions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from chatledger.api.auth import SESSION_COOKIE, CurrentPrincipal, PlatformDep, client_ip
from chatledger.errors import Unauthenticated

router = APIRouter(tags=["auth"])


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


@router.post("/auth/login")
def login(
    body: LoginIn, request: Request, response: Response, platform: PlatformDep
) -> dict[str, Any]:
    """Log in with email and password: sets the session cookie and returns the session token
    (usable as a bearer token) and the CSRF token that console forms must send back."""
    ip = client_ip(request)
    platform.abuse.charge("ip", ip or "unknown", None, request.url.path, ip)
    try:
        session = platform.identity.login(body.email, body.password, ip=ip)
    except Unauthenticated:
        platform.abuse.observe_failed_login(ip)
        raise
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
        max_age=12 * 3600,
    )
    principal = session.principal
    return {
        "token": session.token,
        "csrf_token": session.csrf_token,
        "expires_at": session.expires_at,
        "user_id": principal.actor.id,
        "role": principal.role.value,
        "workspace_id": principal.workspace_id,
    }


@router.post("/auth/logout", status_code=204)
def logout(request: Request, principal: CurrentPrincipal, platform: PlatformDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE) or request.headers.get("authorization", "")[7:]
    session = platform.identity.authenticate_session(token.strip(), ip=client_ip(request))
    platform.identity.logout(session)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
