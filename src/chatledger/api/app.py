"""The FastAPI app factory (no module-level state: the platform is passed in)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from chatledger import __version__
from chatledger.api.errors import install_error_handlers, internal_error
from chatledger.api.routes import (
    analytics,
    audit,
    audit_search,
    auth,
    chatbots,
    conversations,
    documents,
    evidence,
    ingest,
    otlp,
    privacy,
)
from chatledger.platform import Platform

API_PREFIX = "/api/v1"


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="ChatLedger",
        version=__version__,
        description="RAG chatbots whose every interaction is written to a tamper-evident ledger.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.platform = platform
    install_error_handlers(app)

    @app.middleware("http")
    async def _request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.request_id = (
            request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex[:16]
        )
        try:
            response = await call_next(request)
        except Exception as exc:  # answered here, in the one shape, and not re-raised
            response = internal_error(request, exc)
        response.headers["X-Request-ID"] = request.state.request_id
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, object]:
        return {"status": "ok", "ledger_size": platform.ledger.size()}

    api_modules = (
        auth,
        chatbots,
        documents,
        conversations,
        audit,
        audit_search,
        evidence,
        privacy,
        analytics,
        ingest,
    )
    for module in api_modules:
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(otlp.router)  # OTLP/HTTP lives at its standard path, /v1/traces
    _mount_console(app)
    return app


def _mount_console(app: FastAPI) -> None:
    """The web console and chat widget (server-rendered), when present."""
    from chatledger.console.routes import mount

    mount(app)
