"""A real server, a real browser: Playwright (sync API) driving Debian's Chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chatledger.config import Settings
from chatledger.identity.principal import system_principal
from tests.api.server import LiveServer, live_server

CHROMIUM = os.environ.get("CHATLEDGER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
PASSWORD = "correct horse battery staple"


@dataclass
class Console:
    """The live server plus what the scenario creates as it goes."""

    server: LiveServer
    admin_email: str = "admin@example.com"
    auditor_email: str = "auditor@example.com"
    auditor_id: str = ""
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url


# Package scope, not session: Playwright's sync API keeps an event loop running in the main
# thread until it stops, which would break asyncio.run() in the test packages that follow.
@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data_dir = tmp_path_factory.mktemp("console") / "data"
    settings = Settings.load(data_dir)
    # one browser on loopback makes every request from the same IP: give it room
    settings.rate_limits = {"ip": [2000, 60], "session": [500, 60]}
    settings.save()
    with live_server(data_dir) as server:
        operator = system_principal(server.workspace_id)
        identity = server.platform.identity
        identity.create_user(operator, email="admin@example.com", password=PASSWORD, role="admin")
        auditor = identity.create_user(
            operator, email="auditor@example.com", password=PASSWORD, role="auditor"
        )
        yield Console(server, auditor_id=auditor)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (or set CHATLEDGER_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS
