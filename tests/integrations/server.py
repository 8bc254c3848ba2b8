"""A real ChatLedger server on loopback for the integration tests (uvicorn in a thread).

Like ``tests.api.server.live_server``, plus: it can be stopped and started again on the same
data directory and port (the SDK's "server went away" tests), it makes sure the SDK ingest
router is mounted (until the app factory includes it), and it gives an ingest key and a
chatbot to record against.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from chatledger.api.app import API_PREFIX, create_app
from chatledger.config import Settings
from chatledger.events import Actor
from chatledger.identity.principal import system_principal
from chatledger.ledger.service import Record
from chatledger.platform import Platform
from tests.api.server import free_port

GENEROUS = {kind: [1_000_000, 60] for kind in ("ip", "visitor", "session", "api_key")}


@dataclass
class Server:
    url: str
    port: int
    platform: Platform
    workspace_id: str
    ingest_key: str
    chatbot_id: str
    _server: uvicorn.Server
    _thread: threading.Thread

    def key(self, role: str) -> str:
        token, _ = self.platform.identity.create_api_key(
            system_principal(self.workspace_id), role=role, name=f"test {role}"
        )
        return token

    def records(self, start: int = 0) -> list[Record]:
        ledger = self.platform.ledger
        return list(ledger.records(start, ledger.size()))

    def actions(self, start: int = 0) -> list[str]:
        return [r.entry.action for r in self.records(start)]

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.platform.close()


def app_for(platform: Platform) -> FastAPI:
    app = create_app(platform)
    paths = {getattr(route, "path", "") for route in app.routes}
    if f"{API_PREFIX}/ingest/events" not in paths:
        from chatledger.api.routes import ingest

        app.include_router(ingest.router, prefix=API_PREFIX)
    return app


def start_server(data_dir: Path, *, port: int | None = None, **settings: Any) -> Server:
    config = Settings.load(data_dir)
    config.rate_limits = GENEROUS
    for name, value in settings.items():
        setattr(config, name, value)
    platform = Platform.open(config)
    system = Actor("system", "tests")
    existing = platform.identity.workspaces()
    if existing:
        workspace = str(existing[0]["id"])
    else:
        workspace = platform.identity.create_workspace("Integrations", system)
    principal = system_principal(workspace)
    bots = platform.chatbots.list_chatbots(principal)
    bot = bots[0] if bots else platform.chatbots.create(principal, "External bot", {})
    key, _ = platform.identity.create_api_key(principal, role="agent", name="ingest")
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app_for(platform), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.started:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        time.sleep(0.02)
    else:
        server.should_exit = True
        thread.join(timeout=10)
        platform.close()
        raise RuntimeError("the test server did not start")
    return Server(url, port, platform, workspace, key, bot.id, server, thread)


@contextmanager
def running(data_dir: Path, **kwargs: Any) -> Iterator[Server]:
    server = start_server(data_dir, **kwargs)
    try:
        yield server
    finally:
        server.stop()
