"""Authentication for the API: ``Authorization: Bearer <api key>`` or a console session
cookie (with a CSRF token on unsafe methods)."""

from __future__ import annotations

import contextlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from chatledger.errors import ChatLedgerError, Forbidden, Unauthenticated
from chatledger.events import Actor, Entity, Event, Outcome
from chatledger.identity.principal import Principal
from chatledger.identity.service import SESSION_PREFIX
from chatledger.platform import Platform

SESSION_COOKIE = "chatledger_session"
CSRF_HEADER = "x-csrf-token"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _record_missing(platform: Platform, request: Request, reason: str) -> None:
    ip = client_ip(request)
    with contextlib.suppress(ChatLedgerError):
        platform.ledger.append(
            Event(
                "auth.login_failed",
                platform.ledger.anonymous_actor(ip),
                Entity("http_request", f"{request.method} {request.url.path}"[:200]),
                Outcome.DENIED,
                attributes={"method": "none", "reason": reason},
                payload={"ip": ip} if ip else None,
            )
        )


def key_actor(platform: Platform, request: Request) -> Actor | None:
    """The actor of the request's valid API key, found without recording anything (no
    ``auth.token_use``, no failure, no rate-limit charge): who sent a request refused
    before authentication ran. ``None`` for no key, a bad key, or a session."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or token.startswith(SESSION_PREFIX):
        return None
    try:
        return platform.identity.valid_key_actor(token)
    except ChatLedgerError:
        return None


def authenticate(request: Request) -> Principal:
    platform = get_platform(request)
    ip = client_ip(request)
    path = request.url.path
    platform.abuse.charge("ip", ip or "unknown", None, path, ip)
    principal = _authenticate(platform, request, ip)
    kind = {"api_key": "api_key", "session": "session", "widget": "visitor"}.get(principal.via)
    if kind is not None:
        platform.abuse.charge(
            kind, principal.credential_id or principal.actor.id, principal.actor, path, ip
        )
    platform.abuse.observe_request(principal, path)
    return principal


def _authenticate(platform: Platform, request: Request, ip: str | None) -> Principal:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            _record_missing(platform, request, "malformed_authorization")
            raise Unauthenticated("use 'Authorization: Bearer <api key>'")
        try:
            if token.startswith(SESSION_PREFIX):
                principal = platform.identity.authenticate_session(token, ip=ip).principal
            else:  # an API key, or not a credential at all (the failure is recorded)
                principal = platform.identity.authenticate_key(token, ip=ip)
        except Unauthenticated:
            # Guessing keys or sessions from one address is a failed-login pattern too.
            platform.abuse.observe_failed_login(ip)
            raise
        request.state.principal = principal
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session = platform.identity.authenticate_session(cookie, ip=ip)
        request.state.principal = session.principal
        if request.method in _UNSAFE:
            sent = request.headers.get(CSRF_HEADER, "")
            # bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
            if not hmac.compare_digest(
                sent.encode("utf-8", "surrogateescape"), session.csrf_token.encode()
            ):
                raise Forbidden("missing or wrong CSRF token", details={"reason": "csrf"})
        return session.principal
    _record_missing(platform, request, "missing_credentials")
    raise Unauthenticated("authentication required: send 'Authorization: Bearer <api key>'")


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
