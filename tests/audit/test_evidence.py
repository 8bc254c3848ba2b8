"""Evidence packs: a round trip, what they contain, erased content, subject and time-range
scopes, the CLI and the HTTP API."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from chatledger.audit.evidence import (
    Custodian,
    EvidenceScope,
    build_evidence_pack,
    verify_evidence,
)
from chatledger.chat.replay import replay_conversation
from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.errors import InvalidInput, NotFound
from chatledger.events import Actor
from chatledger.ledger.service import Ledger
from chatledger.platform import Platform
from tests.api.server import LiveServer, live_server
from tests.privacy.seed import HOSTILE, Seeded, seed

AUDITOR = Custodian(Actor("user", "usr_auditor", "auditor"), "api", "Dispute 2026-17 <urgent>")
runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    platform = Platform.open(Settings.load(tmp_path_factory.mktemp("evidence") / "data"))
    try:
        yield seed(platform)
    finally:
        platform.close()


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_round_trip(world: Seeded, tmp_path: Path) -> None:
    ledger = world.platform.ledger
    conv = world.conversations["carol"]
    out = tmp_path / "pack.zip"
    result = build_evidence_pack(ledger, EvidenceScope(conversation_id=conv), AUDITOR, out)

    files = members(out)
    assert set(files) == {
        "manifest.json",
        "manifest.sig",
        "README.txt",
        "checkpoint.note",
        "verifier.key",
        "entries.jsonl",
        "proofs.jsonl",
        "payloads.jsonl",
        "replay.json",
        "replay.html",
        "custody.json",
    }
    report = verify_evidence(out, str(ledger.verifier))
    assert report.ok, report.to_json()
    assert report.warnings == []
    assert report.pack_id == result.pack_id and report.conversations == 1
    assert report.sources_checked > 0 and report.payloads_checked > 0

    # The replay is the conversation as recorded, with everything the entries say.
    replay = json.loads(files["replay.json"])
    (conversation,) = replay["conversations"]
    live = replay_conversation(ledger, conv)
    assert conversation["messages"] == json.loads(json.dumps(live["messages"]))
    assert conversation["guard_verdicts"], "the blocked injection attempt is in the replay"
    seqs = [json.loads(line)["seq"] for line in files["entries.jsonl"].splitlines()]
    assert set(conversation["ledger_seqs"]) <= set(seqs)
    # The configuration in force and the documents quoted are proven too.
    actions = {json.loads(line)["action"] for line in files["entries.jsonl"].splitlines()}
    assert {"chatbot.create", "document.upload", "audit.evidence"} <= actions

    # Custody: who, when, why, the tool, and the pack's own audit.evidence entry.
    custody = json.loads(files["custody.json"])
    assert custody["reason"] == "Dispute 2026-17 <urgent>"
    assert custody["exported_by"]["id"] == "usr_auditor" and custody["tool"]["name"] == "chatledger"
    event = ledger.read(result.event_seq)
    assert event.entry.action == "audit.evidence"
    assert event.entry.attributes["pack_id"] == result.pack_id
    assert event.entry.attributes["conversation_id"] == conv
    assert event.payload == {"reason": "Dispute 2026-17 <urgent>"}

    # The page is self-contained and escapes what visitors typed.
    html = files["replay.html"].decode()
    assert "<script>alert" not in html and "&lt;script&gt;alert(" in html
    assert "Content-Security-Policy" in html and "http://" not in html.replace("http-equiv", "")
    assert "Dispute 2026-17 &lt;urgent&gt;" in html
    # The manifest is what the signature covers.
    manifest = json.loads(files["manifest.json"])
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == digest
    assert ledger.verify().ok


def test_pack_of_erased_content_still_verifies(tmp_path: Path) -> None:
    platform = Platform.open(Settings.load(tmp_path / "data"))
    try:
        data = seed(platform)
        ledger = platform.ledger
        erasure = ledger.erase_subject(
            "visitor-bob", Actor("user", "dpo", "admin"), reason="art. 17"
        )
        out = tmp_path / "pack.zip"
        build_evidence_pack(
            ledger, EvidenceScope(conversation_id=data.conversations["bob"]), AUDITOR, out
        )
        report = verify_evidence(out, str(ledger.verifier))
        assert report.ok, report.to_json()
        assert report.payloads_erased > 0
        replay = json.loads(members(out)["replay.json"])
        messages = replay["conversations"][0]["messages"]
        assert all(m.get("erased") and m["erasure_seq"] == erasure.seq for m in messages)
        entries = [json.loads(x) for x in members(out)["entries.jsonl"].splitlines()]
        assert erasure.seq in {e["seq"] for e in entries}, "the erasure event proves the erasure"
        assert "visitor-bob" not in members(out)["replay.html"].decode()
    finally:
        platform.close()


def test_subject_and_time_range_scopes(world: Seeded, tmp_path: Path) -> None:
    ledger = world.platform.ledger
    out = tmp_path / "subject.zip"
    build_evidence_pack(ledger, EvidenceScope(subject="user-alice"), AUDITOR, out)
    report = verify_evidence(out, str(ledger.verifier))
    assert report.ok, report.to_json()
    replay = json.loads(members(out)["replay.json"])
    assert [c["conversation_id"] for c in replay["conversations"]] == [world.conversations["alice"]]
    assert replay["scope"]["subject"] == ledger.subject_ref("user-alice")
    assert "user-alice" not in members(out)["custody.json"].decode()

    first_ts = ledger.entry(0).ts
    out = tmp_path / "range.zip"
    build_evidence_pack(ledger, EvidenceScope(start=first_ts[:10], end=first_ts[:10]), AUDITOR, out)
    report = verify_evidence(out, str(ledger.verifier))
    assert report.ok, report.to_json()
    assert report.conversations == 3
    replay = json.loads(members(out)["replay.json"])
    assert any(e["action"] == "workspace.create" for e in replay["events"])

    with pytest.raises(NotFound):
        build_evidence_pack(ledger, EvidenceScope(conversation_id="conv_nope"), AUDITOR, out)
    with pytest.raises(NotFound):
        build_evidence_pack(
            ledger, EvidenceScope(start="1999-01-01", end="1999-01-02"), AUDITOR, out
        )
    with pytest.raises(NotFound):  # a conversation the caller may not see
        build_evidence_pack(
            ledger,
            EvidenceScope(conversation_id=world.conversations["alice"]),
            AUDITOR,
            out,
            entry_filter=lambda chatbot_id, attributes: False,
        )
    with pytest.raises(InvalidInput):
        build_evidence_pack(ledger, EvidenceScope(), AUDITOR, out)
    with pytest.raises(InvalidInput):
        build_evidence_pack(ledger, EvidenceScope(start="last tuesday"), AUDITOR, out)


def test_cli_evidence_verify_and_replay(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    platform = Platform.open(Settings.load(data_dir))
    try:
        data = seed(platform)
        key = str(platform.ledger.verifier)
    finally:
        platform.close()
    conv = data.conversations["alice"]
    out = tmp_path / "pack.zip"
    common = ["--data-dir", str(data_dir)]
    result = runner.invoke(
        app,
        ["audit", "evidence", "--conversation", conv, "--out", str(out), "--reason", "x", *common],
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}")
    result = runner.invoke(
        app, ["audit", "evidence", "--conversation", conv, "--out", str(out), "--json", *common]
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["conversations"] == 1 and out.is_file()

    key_file = tmp_path / "log.pub"
    key_file.write_text(key + "\n")
    for given in (key, str(key_file)):
        result = runner.invoke(app, ["audit", "verify-evidence", str(out), "--key", given])
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith(f"ok: pack {summary['pack_id']}")
    result = runner.invoke(app, ["audit", "verify-evidence", str(out), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["key_source"] == "pack"
    assert "pin the log's key" in result.stderr

    # A tampered pack fails with a one-line reason and exit status 3.
    files = members(out)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, body in files.items():
            zf.writestr(name, body.replace(b"How do I reset", b"How to reset"))
    result = runner.invoke(app, ["audit", "verify-evidence", str(bad), "--key", key])
    assert result.exit_code == 3
    assert "file_altered" in result.stderr

    result = runner.invoke(app, ["audit", "replay", conv, *common])
    assert result.exit_code == 0, result.stderr
    assert "How do I reset my password?" in result.stdout
    result = runner.invoke(app, ["audit", "replay", conv, "--json", *common])
    assert json.loads(result.stdout)["conversation_id"] == conv
    result = runner.invoke(app, ["audit", "replay", conv, "--format", "html", *common])
    assert result.stdout.startswith("<!DOCTYPE html>")
    result = runner.invoke(app, ["audit", "replay", "conv_missing", *common])
    assert result.exit_code != 0 and "no conversation" in result.stderr
    result = runner.invoke(app, ["audit", "evidence", "--out", str(out), *common])
    assert result.exit_code == 2 and "give a conversation" in result.stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LiveServer, Seeded]]:
    with live_server(tmp_path / "data") as live:
        yield live, seed(live.platform, live.workspace_id)


def test_api_evidence(served: tuple[LiveServer, Seeded], tmp_path: Path) -> None:
    live, data = served
    conv = data.conversations["bob"]
    with live.client(live.key("auditor")) as api:
        response = api.post(
            "/audit/evidence", json={"conversation_id": conv, "reason": "chargeback"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/zip"
        pack = tmp_path / "api.zip"
        pack.write_bytes(response.content)
        report = verify_evidence(pack, str(live.platform.ledger.verifier))
        assert report.ok, report.to_json()
        custody = report.custody
        assert custody["exported_by"]["via"] == "api" and custody["reason"] == "chargeback"
        assert custody["exported_by"]["type"] == "api_key"

        by_subject = api.post("/audit/evidence", json={"subject": "visitor-carol"})
        assert by_subject.status_code == 200, by_subject.text
        missing = api.post("/audit/evidence", json={"conversation_id": "conv_nope"})
        assert missing.status_code == 404
        empty = api.post("/audit/evidence", json={})
        assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_input"
    with live.client(live.key("editor")) as api:
        denied = api.post("/audit/evidence", json={"conversation_id": conv})
        assert denied.status_code == 403
    with httpx.Client(base_url=f"{live.url}/api/v1") as anonymous:
        assert anonymous.post("/audit/evidence", json={"conversation_id": conv}).status_code == 401


def test_api_evidence_stays_in_its_workspace(served: tuple[LiveServer, Seeded]) -> None:
    live, data = served
    other_ws = live.platform.identity.create_workspace("Other", Actor("system", "tests"))
    other = seed(live.platform, other_ws)
    with live.client(live.key("auditor")) as api:
        foreign = api.post(
            "/audit/evidence", json={"conversation_id": other.conversations["alice"]}
        )
        assert foreign.status_code == 403, foreign.text
        ranged = api.post("/audit/evidence", json={"from": "2000-01-01"})
        assert ranged.status_code == 200, ranged.text
    with zipfile.ZipFile(io.BytesIO(ranged.content)) as zf:
        replay = json.loads(zf.read("replay.json"))
        entries = zf.read("entries.jsonl").decode()
    ids = {c["conversation_id"] for c in replay["conversations"]}
    assert ids == set(data.conversations.values())
    assert other.bot_id not in entries


def test_self_check_refuses_a_broken_pack(world: Seeded, tmp_path: Path) -> None:
    """The exporter verifies the pack before handing it over (here: a lying ledger)."""
    ledger = world.platform.ledger

    class Liar:
        def __init__(self, inner: Ledger) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

        def read(self, seq: int) -> object:
            record = self._inner.read(seq)
            if record.payload and "text" in record.payload:
                return replace(record, payload={**record.payload, "text": "edited"})
            return record

    out = tmp_path / "liar.zip"
    with pytest.raises(Exception, match="own verification"):
        build_evidence_pack(
            Liar(ledger),  # type: ignore[arg-type]
            EvidenceScope(conversation_id=world.conversations["alice"]),
            AUDITOR,
            out,
        )
    assert not out.exists() and not list(tmp_path.iterdir())


def test_hostile_text_is_escaped_everywhere(world: Seeded, tmp_path: Path) -> None:
    out = tmp_path / "pack.zip"
    build_evidence_pack(
        world.platform.ledger,
        EvidenceScope(conversation_id=world.conversations["carol"]),
        Custodian(Actor("user", "<img src=x onerror=alert(1)>"), "cli", "<b>why</b>"),
        out,
    )
    html = members(out)["replay.html"].decode()
    assert HOSTILE not in html
    assert "<img" not in html and "<b>why" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
