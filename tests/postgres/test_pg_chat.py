"""A chat on PostgreSQL end to end: documents indexed in the ledger's transaction, retrieved
through the store's read connection, answered with sources, and a ledger that verifies; the
same over real HTTP against ``chatledger serve --database``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from chatledger.config import Settings
from chatledger.events import Actor
from chatledger.identity.principal import Principal, system_principal
from chatledger.platform import Platform

DEMO = resources.files("chatledger") / "demo_data"
REFUNDS = "refund-policy.pdf"
PASSWORDS = "password-reset.txt"


def demo_file(name: str) -> bytes:
    return (DEMO / name).read_bytes()


def upload_help_centre(platform: Platform, operator: Principal, bot_id: str) -> dict[str, str]:
    """Every demo article; their ids by file name."""
    ids = {}
    for item in DEMO.iterdir():
        if item.name.endswith((".md", ".txt", ".html", ".docx", ".pdf")):
            ids[item.name] = platform.documents.upload(
                operator, bot_id, item.name, item.read_bytes(), None
            ).id
    return ids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def platform(tmp_path: Path, pg_url: str) -> Iterator[Platform]:
    p = Platform.open(Settings.load(tmp_path / "data", database_url=pg_url))
    yield p
    p.close()


@pytest.fixture
def operator(platform: Platform) -> Principal:
    return system_principal(platform.identity.create_workspace("W", Actor("system", "tests")))


def test_a_conversation_on_postgres_answers_with_sources(
    platform: Platform, operator: Principal
) -> None:
    assert platform.ledger.store.dialect == "postgresql"
    bot = platform.chatbots.create(operator, "Support", {})
    ids = upload_help_centre(platform, operator, bot.id)
    # retrieval quality on the demo help centre: the answering article first, mostly
    questions = json.loads((DEMO / "questions.json").read_text())["questions"]
    index, conn = platform.chat.index, platform.ledger.store.read_connection()
    answerable = [q for q in questions if q["answerable"]]
    first = in_top3 = 0
    for q in answerable:
        hits = index.search(conn, bot.id, q["question"], 3)
        wanted = {ids[name] for name in q["sources"]}
        first += bool(hits) and hits[0].document_id in wanted
        in_top3 += any(h.document_id in wanted for h in hits)
    assert first >= 0.7 * len(answerable), (first, len(answerable))
    assert in_top3 >= 0.85 * len(answerable), (in_top3, len(answerable))

    conv = platform.chat.start(operator, bot.id, visitor_id="visitor-1")
    turn = platform.chat.send(operator, conv.id, "How do I reset my password?")
    sources = turn.answer["sources"]
    assert turn.answer["text"] and sources
    assert sources[0]["document_id"] == ids[PASSWORDS]
    assert all(0.0 < s["score"] <= 1.0 for s in sources)

    # a new version retires the old chunks; a deleted document leaves retrieval at once
    v2 = demo_file(PASSWORDS) + b"\n\nReset links now expire after 30 minutes.\n"
    assert platform.documents.upload(operator, bot.id, PASSWORDS, v2, None).id == ids[PASSWORDS]
    again = platform.chat.send(operator, conv.id, "How do I reset my password?")
    mine = [s for s in again.answer["sources"] if s["document_id"] == ids[PASSWORDS]]
    assert mine and {s["document_version"] for s in mine} == {2}
    platform.documents.delete(operator, ids[PASSWORDS])
    gone = platform.chat.send(operator, conv.id, "How do I reset my password?")
    assert all(s["document_id"] != ids[PASSWORDS] for s in gone.answer["sources"])

    # hostile text is a question like any other
    odd = platform.chat.send(operator, conv.id, "refund' & !(money | :*) \\ \" back\x00?")
    assert odd.answer["sources"][0]["document_id"] == ids[REFUNDS]

    platform.chatbots.delete(operator, bot.id)
    rows = platform.ledger.store.query(
        "SELECT count(*) FROM retrieval_chunks WHERE chatbot_id = ?", (bot.id,)
    )
    assert rows == [(0,)]
    assert platform.ledger.verify().ok


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path, pg_url: str) -> Iterator[tuple[str, Platform, str]]:
    """``chatledger serve --database`` in a subprocess; an admin key made beforehand by a
    platform in this process, which stays open on the same schema (two processes, one log)."""
    data = tmp_path / "data"
    platform = Platform.open(Settings.load(data, database_url=pg_url))
    workspace = platform.identity.create_workspace("W", Actor("system", "tests"))
    key, _ = platform.identity.create_api_key(
        system_principal(workspace), role="admin", name="test admin"
    )
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CHATLEDGER_DATABASE_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatledger.cli",
            "serve",
            "--data-dir",
            str(data),
            "--database",
            pg_url,
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"the server exited: {err}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server did not start")
            time.sleep(0.1)
        yield url, platform, key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        platform.close()


def test_a_conversation_over_http_on_postgres(served: tuple[str, Platform, str]) -> None:
    url, platform, key = served
    headers = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=30) as api:
        bot = api.post("/chatbots", json={"name": "Support"})
        assert bot.status_code == 201, bot.text
        bot_id = bot.json()["id"]
        uploaded = {}
        for name in ("hardware-shipping.html", PASSWORDS, "storage-quota.txt"):
            doc = api.post(f"/chatbots/{bot_id}/documents", files={"file": (name, demo_file(name))})
            assert doc.status_code == 201, doc.text
            assert doc.json()["chunks"] > 0
            uploaded[name] = doc.json()["id"]
        conv = api.post(f"/chatbots/{bot_id}/conversations", json={"visitor_id": "v-http"})
        assert conv.status_code in (200, 201), conv.text
        turn = api.post(
            f"/conversations/{conv.json()['id']}/messages",
            json={"text": "What does express delivery cost?"},
        )
        assert turn.status_code == 200, turn.text
        answer = turn.json()["answer"]
        assert answer["text"] and answer["sources"]
        assert answer["sources"][0]["document_id"] == uploaded["hardware-shipping.html"]
    # the server's events are in the log this process reads, and the whole log verifies
    ledger = platform.ledger
    actions = {e.action for e in ledger.entries(0, ledger.size())}
    assert {"message.user", "message.answer"} <= actions
    assert ledger.verify().ok
