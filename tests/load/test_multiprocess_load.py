"""Several server processes on one ledger under load: 4 `chatledger serve` processes, 100
concurrent clients chatting; afterwards every acknowledged message is recorded exactly once
and the ledger verifies. Here for 20 s on the suite's backend (SQLite, or PostgreSQL under
``--backend postgres``); tests/postgres/test_pg_load.py runs it on PostgreSQL for 60 s."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from chatledger.config import Settings
from chatledger.events import Actor
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform
from tests.api.server import free_port
from tests.conftest import subprocess_env

SERVERS = 4
CLIENTS = 100


def prepare(
    data_dir: Path, database: str | None, limits: dict[str, list[float]] | None = None
) -> tuple[str, str, str | None]:
    """A workspace, an admin key, a chatbot with a document; returns the key, the chatbot and
    the database URL the settings chose (the given one, or the test backend's)."""
    settings = Settings.load(data_dir, database_url=database)
    settings.rate_limits = {k: [10_000_000, 60] for k in ("ip", "visitor", "session", "api_key")}
    settings.rate_limits.update(limits or {})
    settings.save()
    platform = Platform.open(settings)
    try:
        op = system_principal(platform.identity.create_workspace("Load", Actor("system", "tests")))
        key, _ = platform.identity.create_api_key(op, role="admin")
        bot = platform.chatbots.create(op, "Load bot", {})
        platform.documents.upload(
            op,
            bot.id,
            "hours.md",
            b"# Opening hours\n\nSupport is open from 9 to 5 on weekdays.\n\n"
            b"# Refunds\n\nRefunds are issued within 14 days.\n",
            None,
        )
        return key, bot.id, settings.database_url
    finally:
        platform.close()


@contextmanager
def running_servers(
    tmp_path: Path,
    database: str | None,
    *,
    servers: int = SERVERS,
    workers: int = 1,
    limits: dict[str, list[float]] | None = None,
) -> Iterator[tuple[list[str], str, str, Path, str | None]]:
    data_dir = tmp_path / "data"
    key, bot, database = prepare(data_dir, database, limits)
    procs = []
    urls = []
    env = {**os.environ, "CHATLEDGER_DATA_DIR": str(data_dir)}
    if database:
        env["CHATLEDGER_DATABASE_URL"] = database
    for _ in range(servers):
        port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "chatledger.cli", "serve", "--port", str(port)),
                    *("--workers", str(workers)),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "a server did not start"
                time.sleep(0.2)
        yield urls, key, bot, data_dir, database
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.communicate(timeout=60)


@pytest.mark.slow
def test_four_servers_hundred_clients(tmp_path: Path) -> None:
    with running_servers(tmp_path, None) as servers:
        run_load(servers, duration=float(os.environ.get("CHATLEDGER_LOAD_SECONDS", "20")))


@pytest.mark.slow
def test_one_server_with_two_workers(tmp_path: Path) -> None:
    """`serve --workers 2`: two processes behind one port, one ledger."""
    with running_servers(tmp_path, None, servers=1, workers=2) as servers:
        run_load(servers, duration=5.0, clients=20)


def test_workers_share_one_rate_limit(tmp_path: Path) -> None:
    """Each request on a new connection, so the two workers share the load; together they
    grant the key its limit once, not once each."""
    limits = {"api_key": [12.0, 3600.0]}
    with running_servers(tmp_path, None, servers=1, workers=2, limits=limits) as servers:
        (url,), key, _, _, _ = servers
        codes = [
            httpx.get(
                f"{url}/api/v1/chatbots", headers={"Authorization": f"Bearer {key}"}, timeout=30
            ).status_code
            for _ in range(30)
        ]
    assert codes.count(200) == 12 and codes.count(429) == 18, codes


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_reports_a_port_in_use(
    tmp_path: Path, pytestconfig: pytest.Config, workers: int
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [
                *(sys.executable, "-m", "chatledger.cli", "serve", "--port", str(port)),
                *("--workers", str(workers), "--data-dir", str(tmp_path / "data")),
            ],
            env=subprocess_env(pytestconfig, tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}: ")


def run_load(
    servers: tuple[list[str], str, str, Path, str | None],
    duration: float,
    clients: int = CLIENTS,
) -> int:
    """Chat from ``clients`` threads for ``duration`` seconds, then check the ledger; returns
    the number of acknowledged turns."""
    urls, key, bot, data_dir, database = servers
    acknowledged: list[str] = []  # message ids the servers answered 200 for
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def client(i: int) -> None:
        url = urls[i % len(urls)]
        with httpx.Client(
            base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=120
        ) as http:
            conv = http.post(f"/api/v1/chatbots/{bot}/conversations", json={"visitor_id": f"v{i}"})
            if conv.status_code != 201:
                with lock:
                    failures.append(conv.text[:200])
                return
            conv_id = conv.json()["id"]
            while time.monotonic() < stop_at:
                r = http.post(
                    f"/api/v1/conversations/{conv_id}/messages",
                    json={"text": "When is support open?"},
                )
                with lock:
                    if r.status_code == 200:
                        acknowledged.append(r.json()["message_id"])
                    else:
                        failures.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    assert acknowledged, "no turn was acknowledged"

    platform = Platform.open(Settings.load(data_dir, database_url=database))
    try:
        ledger = platform.ledger
        entries = list(ledger.entries(0, ledger.size()))
        users = [e.attributes["message_id"] for e in entries if e.action == "message.user"]
        answers = [e.attributes["in_reply_to"] for e in entries if e.action == "message.answer"]
        assert sorted(users) == sorted(set(users)), "a message was recorded twice"
        assert sorted(users) == sorted(acknowledged)
        assert sorted(answers) == sorted(acknowledged)
        assert [e.seq for e in entries] == list(range(len(entries)))
        report = ledger.verify()
        assert report.ok, report.to_json()
    finally:
        platform.close()
    print(f"\n{len(acknowledged)} turns acknowledged in {duration:.0f} s by {len(urls)} servers")
    return len(acknowledged)
