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

from chatledger.errors import ChatLedgerError, Forbidden, RateLimited
from chatledger.events import Entity, Event, Outcome

log = logging.getLogger(__name__)


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
    actor = principal.actor if principal is not None else platform.ledger.anonymous_actor(ip)
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
        elif exc.status in (400, 413, 422) and request.url.path.startswith("/api/"):
            _record(request, "request.rejected", Outcome.DENIED, {"reason": exc.code})
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
        _record(request, "request.rejected", Outcome.DENIED, {"reason": "validation"})
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
        return JSONResponse(
            error_body(request, code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(request, "internal_error", "the server failed to handle this request"),
            status_code=500,
        )
