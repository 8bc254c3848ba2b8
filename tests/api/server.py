"""A real ChatLedger server on loopback for the tests: uvicorn in a thread, real HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from chatledger.api.app import create_app
from chatledger.config import Settings
from chatledger.events import Actor
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    url: str
    platform: Platform
    workspace_id: str
    admin_key: str

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=30)

    def key(self, role: str) -> str:
        token, _ = self.platform.identity.create_api_key(
            system_principal(self.workspace_id), role=role, name=f"test {role}"
        )
        return token


GENEROUS_LIMITS = {kind: [1_000_000, 60] for kind in ("ip", "visitor", "session", "api_key")}


@contextmanager
def live_server(
    data_dir: Path, *, rate_limits: dict[str, list[float]] | None = None, port: int | None = None
) -> Iterator[LiveServer]:
    """Serve a platform on loopback; tests that are not about rate limits get generous ones."""
    settings = Settings.load(data_dir)
    settings.rate_limits = GENEROUS_LIMITS if rate_limits is None else rate_limits
    platform = Platform.open(settings)
    existing = platform.identity.workspaces()
    if existing:
        workspace = str(existing[0]["id"])
    else:
        workspace = platform.identity.create_workspace("Test workspace", Actor("system", "tests"))
    admin_key, _ = platform.identity.create_api_key(
        system_principal(workspace), role="admin", name="test admin"
    )
    port = port or free_port()
    config = uvicorn.Config(create_app(platform), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        raise RuntimeError("the test server did not start")
    try:
        yield LiveServer(url, platform, workspace, admin_key)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        platform.close()


def sse_events(response: httpx.Response) -> list[tuple[str | None, Any]]:
    """The (event, data) pairs of a server-sent-events response, read to its end."""
    events: list[tuple[str | None, Any]] = []
    current = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            current = line[7:]
        elif line.startswith("data: "):
            events.append((current, json.loads(line[6:])))
    return events
