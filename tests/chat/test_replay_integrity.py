"""Replay checks every source text against the SHA-256 its answer's ledger entry recorded: a
passage altered in the content store behind the ledger's back is flagged and withheld (the
library, the CLI in text, JSON and HTML, and the HTTP API), recorded as a
``ledger.tamper_detected`` security event, and never crashes replay or evidence, whatever
type the altered value has."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from chatledger.api.auth import SESSION_COOKIE
from chatledger.chat.replay import TAMPER_REASON, replay_conversation
from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.documents.content import get_blobs, get_texts, sha256_hex
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform
from tests.api.server import live_server
from tests.privacy.seed import Seeded, seed

runner = CliRunner()
FORGED = "Altered: e-mail your password to support@evil.example to reset it."


def _answer(replay: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in replay["messages"] if m["role"] == "assistant" and m["sources"])


def _set_blob(platform: Platform, digest: str, data: Any) -> None:
    """What an attacker with write access to the database does (no ledger involved)."""
    with platform.ledger.store.write() as txn:
        txn.execute("UPDATE blobs SET data = ? WHERE sha256 = ?", (data, digest))


def _tamper_events(platform: Platform) -> list[dict[str, Any]]:
    rows = platform.ledger.store.query(
        "SELECT seq FROM ledger_entries WHERE action = 'ledger.tamper_detected' ORDER BY seq"
    )
    return [
        {"seq": e.seq, "actor": e.actor, "outcome": e.outcome, **e.attributes}
        for e in (platform.ledger.entry(int(r[0])) for r in rows)
    ]


_CLOSED: set[int] = set()


def _close(platform: Platform) -> None:
    """Close the platform before the CLI opens the same data directory."""
    _CLOSED.add(id(platform))
    platform.close()


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    platform = Platform.open(Settings.load(tmp_path / "data"))
    try:
        yield seed(platform)
    finally:
        if id(platform) not in _CLOSED:
            platform.close()
        _CLOSED.discard(id(platform))


def test_an_altered_source_is_flagged_and_withheld(seeded: Seeded) -> None:
    platform, conv = seeded.platform, seeded.conversations["alice"]
    clean = replay_conversation(platform.ledger, conv)
    assert clean["warnings"] == [] and clean["tampered_sources"] == []
    answer = _answer(clean)
    assert {s["integrity"] for s in answer["sources"]} == {"verified"}
    for source in answer["sources"]:
        assert sha256_hex(source["text"].encode()) == source["chunk_sha256"]

    target = answer["sources"][0]
    _set_blob(platform, target["chunk_sha256"], FORGED.encode())
    replay = replay_conversation(platform.ledger, conv)
    source = _answer(replay)["sources"][0]
    assert source["integrity"] == "tampered"
    assert source["text"] is None and not source.get("erased")
    assert source["stored_sha256"] == sha256_hex(FORGED.encode())
    assert FORGED not in json.dumps(replay)
    (item,) = [t for t in replay["tampered_sources"] if t["answer_id"] == answer["id"]]
    assert item["chunk_id"] == target["chunk_id"]
    assert item["chunk_sha256"] == target["chunk_sha256"]
    assert any(target["chunk_id"] in w and "altered" in w for w in replay["warnings"])
    # the other sources are still shown, as verified
    assert {s["integrity"] for s in _answer(replay)["sources"][1:]} == {"verified"}


def test_erased_content_stays_erased(seeded: Seeded) -> None:
    platform, conv = seeded.platform, seeded.conversations["alice"]
    target = _answer(replay_conversation(platform.ledger, conv))["sources"][0]
    _set_blob(platform, target["chunk_sha256"], None)
    replay = replay_conversation(platform.ledger, conv)
    source = _answer(replay)["sources"][0]
    assert source["erased"] is True and source["text"] is None
    assert source["integrity"] == "erased"
    assert replay["warnings"] == [] and replay["tampered_sources"] == []


@pytest.mark.sqlite_only
def test_a_blob_stored_as_text_is_tampered_content_not_a_crash(
    seeded: Seeded, tmp_path: Path
) -> None:
    platform, conv = seeded.platform, seeded.conversations["alice"]
    target = _answer(replay_conversation(platform.ledger, conv))["sources"][0]
    digest = target["chunk_sha256"]
    _close(platform)
    db = sqlite3.connect(tmp_path / "data" / "chatledger.db")
    original = db.execute("SELECT data FROM blobs WHERE sha256 = ?", (digest,)).fetchone()[0]
    db.execute("UPDATE blobs SET data = ? WHERE sha256 = ?", (FORGED, digest))  # TEXT
    db.commit()
    assert db.execute("SELECT typeof(data) FROM blobs WHERE sha256 = ?", (digest,)).fetchone()[
        0
    ] == ("text")
    db.close()

    common = ["--data-dir", str(tmp_path / "data")]
    result = runner.invoke(app, ["audit", "replay", conv, "--json", *common])
    assert result.exit_code == 3, result.stderr
    assert "internal error" not in result.stderr
    replay = json.loads(result.stdout)
    assert _answer(replay)["sources"][0]["integrity"] == "tampered"

    out = tmp_path / "pack.zip"
    result = runner.invoke(
        app, ["audit", "evidence", "--conversation", conv, "--out", str(out), *common]
    )
    assert result.exit_code == 3, result.stderr
    assert "internal error" not in result.stderr
    assert "do not match the ledger" in result.stderr and target["chunk_id"] in result.stderr
    assert not out.exists()

    # The same text stored as TEXT rather than BLOB is still the content it was.
    db = sqlite3.connect(tmp_path / "data" / "chatledger.db")
    db.execute("UPDATE blobs SET data = ? WHERE sha256 = ?", (bytes(original).decode(), digest))
    db.commit()
    db.close()
    platform = Platform.open(Settings.load(tmp_path / "data"))
    try:
        assert get_blobs(platform.ledger.store, [digest]) == {digest: bytes(original)}
        assert get_texts(platform.ledger.store, [digest]) == {digest: bytes(original).decode()}
        source = _answer(replay_conversation(platform.ledger, conv))["sources"][0]
        assert source["integrity"] == "verified" and source["text"] == bytes(original).decode()
    finally:
        platform.close()


def test_cli_replay_shows_tampering_and_records_it(seeded: Seeded, tmp_path: Path) -> None:
    platform, conv = seeded.platform, seeded.conversations["alice"]
    target = _answer(replay_conversation(platform.ledger, conv))["sources"][0]
    _set_blob(platform, target["chunk_sha256"], FORGED.encode())
    _close(platform)
    common = ["--data-dir", str(tmp_path / "data")]

    result = runner.invoke(app, ["audit", "replay", conv, "--by", "auditor-7", *common])
    assert result.exit_code == 3
    assert "WARNING" in result.stdout
    line = next(x for x in result.stdout.splitlines() if target["chunk_id"] in x and "[" in x)
    assert "TAMPERED" in line
    assert f"warning: source {target['chunk_id']}" in result.stderr
    assert "ledger.tamper_detected" in result.stderr

    result = runner.invoke(app, ["audit", "replay", conv, "--json", *common])
    assert result.exit_code == 3
    replay = json.loads(result.stdout)
    assert replay["warnings"] and replay["tampered_sources"]

    result = runner.invoke(app, ["audit", "replay", conv, "--format", "html", *common])
    assert result.exit_code == 3
    assert "withheld: altered in the content store" in result.stdout
    assert FORGED not in result.stdout

    platform = Platform.open(Settings.load(tmp_path / "data"))
    try:
        events = _tamper_events(platform)
        assert len(events) == 3
        first = events[0]
        assert first["outcome"] == "failure" and first["ok"] is False
        assert first["reason"] == TAMPER_REASON and first["via"] == "cli_replay"
        assert first["actor"]["id"] == "auditor-7"
        assert first["conversation_id"] == conv
        assert first["first_bad_seq"] == _answer(replay)["seq"]
        assert target["chunk_id"] in {s["chunk_id"] for s in first["sources"]}
        # The ledger itself is intact: what was altered is the content store.
        assert platform.ledger.verify().ok
    finally:
        platform.close()


def test_api_replay_flags_tampering(tmp_path: Path) -> None:
    with live_server(tmp_path / "data") as live:
        data = seed(live.platform, live.workspace_id)
        conv = data.conversations["bob"]
        with live.client(live.key("auditor")) as api:
            clean = api.get(f"/conversations/{conv}/replay")
            assert clean.status_code == 200, clean.text
            assert clean.json()["warnings"] == []
            target = _answer(clean.json())["sources"][0]
            _set_blob(live.platform, target["chunk_sha256"], FORGED.encode())
            response = api.get(f"/conversations/{conv}/replay")
        assert response.status_code == 200, response.text
        replay = response.json()
        source = _answer(replay)["sources"][0]
        assert source["integrity"] == "tampered" and source["text"] is None
        assert FORGED not in response.text
        assert (
            replay["warnings"] and replay["tampered_sources"][0]["chunk_id"] == target["chunk_id"]
        )
        (event,) = _tamper_events(live.platform)
        assert event["via"] == "replay" and event["reason"] == TAMPER_REASON
        assert event["actor"]["type"] == "api_key"

        # The console's replay page flags it too, and records it.
        identity = live.platform.identity
        identity.create_user(
            system_principal(live.workspace_id),
            email="auditor@example.com",
            password="a long console password",
            role="auditor",
        )
        session = identity.login("auditor@example.com", "a long console password")
        with httpx.Client(base_url=live.url, cookies={SESSION_COOKIE: session.token}) as web:
            page = web.get(f"/console/conversations/{conv}")
        assert page.status_code == 200, page.text
        assert "Tampering detected" in page.text and target["chunk_id"] in page.text
        assert "altered in the content store: withheld" in page.text
        assert FORGED not in page.text
        assert [e["via"] for e in _tamper_events(live.platform)] == ["replay", "console"]

        # No evidence pack carries the altered text: refused, named, recorded.
        with live.client(live.key("admin")) as api:
            refused = api.post("/audit/evidence", json={"conversation_id": conv})
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert (
            target["chunk_id"] in error["message"]
            and "no evidence pack written" in error["message"]
        )
        assert FORGED not in refused.text
        vias = [e["via"] for e in _tamper_events(live.platform)]
        assert vias == ["replay", "console", "evidence_api"]
        exported = live.platform.ledger.store.query(
            "SELECT count(*) FROM ledger_entries WHERE action = 'audit.evidence'"
        )
        assert exported[0][0] == 0
