"""The one JSON error shape: ``{"error": {"code", "message", "details", "request_id"}}``.

Every error a client can cause becomes a 4xx in this shape; an unexpected failure becomes
a 500 in the same shape with a request id, never a stack trace. Denials that matter for
security (401, 403, 413, 429, malformed input) are recorded as ledger events.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatledger.api.auth import key_actor
from chatledger.errors import ChatLedgerError, Forbidden, RateLimited
from chatledger.events import Entity, Event, Outcome

log = logging.getLogger(__name__)

_REJECTED = (400, 413, 422)  # recorded as request.rejected (docs/security.md)


def request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = uuid.uuid4().hex[:16]
        request.state.request_id = rid
    return str(rid)


def error_body(
    request: Request, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or {},
            "request_id": request_id(request),
        }
    }


def _record(request: Request, action: str, outcome: Outcome, attributes: dict[str, Any]) -> None:
    platform = getattr(request.app.state, "platform", None)
    if platform is None:
        return
    principal = getattr(request.state, "principal", None)
    ip = request.client.host if request.client else None
    if principal is not None:
        actor = principal.actor
    else:  # refused before authentication ran (a body FastAPI could not parse, say)
        actor = key_actor(platform, request) or platform.ledger.anonymous_actor(ip)
    try:
        platform.ledger.append(
            Event(
                action,
                actor,
                Entity("http_request", f"{request.method} {request.url.path}"[:200]),
                outcome,
                attributes={
                    **attributes,
                    "method": request.method,
                    "path": request.url.path[:500],
                    "request_id": request_id(request),
                },
                payload={"ip": ip, "user_agent": request.headers.get("user-agent", "")[:300]},
            )
        )
    except ChatLedgerError:
        log.exception("could not record a rejected request")


def record_rejection(request: Request, status: int, reason: str) -> None:
    """Record a refused malformed or oversized API request (400, 413, 422) as
    ``request.rejected``: one place for every handler that answers one."""
    if status in _REJECTED and request.url.path.startswith("/api/"):
        _record(request, "request.rejected", Outcome.DENIED, {"reason": reason})


def internal_error(request: Request, exc: BaseException) -> JSONResponse:
    """The answer to an unexpected failure: logged with its traceback here, answered as a
    500 in the one error shape (with the request id), never re-raised to the server."""
    log.error(
        "unexpected error on %s %s (request %s)",
        request.method,
        request.url.path,
        request_id(request),
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return JSONResponse(
        error_body(request, "internal_error", "the server failed to handle this request"),
        status_code=500,
        headers={"X-Request-ID": request_id(request)},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ChatLedgerError)
    async def _library_error(request: Request, exc: ChatLedgerError) -> JSONResponse:
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
        if isinstance(exc, Forbidden):
            _record(
                request, "access.denied", Outcome.DENIED, {"reason": exc.message, **exc.details}
            )
        else:
            record_rejection(request, exc.status, exc.code)
        return JSONResponse(
            error_body(request, exc.code, exc.message, exc.details),
            status_code=exc.status,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
                "message": str(err.get("msg", "")),
            }
            for err in exc.errors()
        ]
        message = "; ".join(f"{p['field'] or 'body'}: {p['message']}" for p in problems[:5])
        record_rejection(request, 422, "validation")
        return JSONResponse(
            error_body(
                request, "invalid_input", message or "invalid request", {"problems": problems}
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthenticated",
            403: "forbidden",
            413: "payload_too_large",
        }
        code = codes.get(exc.status_code, "http_error")
        # Starlette's own refusals: an unparsable JSON or multipart body (400), a body over
        # a parser's limit (413)
        record_rejection(request, exc.status_code, code if code != "http_error" else "malformed")
        return JSONResponse(
            error_body(request, code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    # Unexpected failures in routes are answered by the app's request-id middleware (see
    # app.py), so that they never reach Starlette's ServerErrorMiddleware, which re-raises
    # after answering (the server then drops the keep-alive connection). This handler covers
    # a failure in a middleware itself.
    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(request, exc)
