"""Mounts the console's pages, the chat widget and their static files on the app."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from chatledger.console import (
    admin_pages,
    audit_pages,
    auth_pages,
    chat_pages,
    chatbot_pages,
    integrity,
    widget,
)
from chatledger.console.web import STATIC_DIR, headers_middleware


def mount(app: FastAPI) -> None:
    """Add the console (``/console/...``), the widget (``/widget.js``, ``/widget/...``) and
    the security headers they are served with (CSP, frame-ancestors, no-store, ...)."""
    for module in (
        auth_pages,
        chatbot_pages,
        chat_pages,
        audit_pages,
        integrity,
        admin_pages,
        widget,
    ):
        app.include_router(module.router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.middleware("http")(headers_middleware())
