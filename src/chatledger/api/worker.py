"""One worker process of ``chatledger serve --workers N``.

uvicorn's multi-process mode starts each worker by importing an application factory, so the
parent hands the data directory and the database over in the environment
(``CHATLEDGER_DATA_DIR``, ``CHATLEDGER_DATABASE_URL``: see :meth:`Settings.from_env`). Every
worker opens its own platform; the ledger's group commit sequences their appends into one
log (across processes on SQLite through the write lock, on PostgreSQL through the sequencer).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chatledger.api.app import create_app
from chatledger.config import Settings
from chatledger.platform import Platform


def create_worker_app() -> FastAPI:
    platform = Platform.open(Settings.from_env())
    app = create_app(platform)

    @asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        platform.start_background_jobs()
        try:
            yield
        finally:
            platform.close()

    app.router.lifespan_context = lifespan
    return app
