"""Retention: policies with before/after on the record, dry runs that write nothing, expiry
that erases payloads (never entries) with the ledger still verifying, and legal holds that
suspend it."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.errors import InvalidInput, NotFound
from chatledger.events import Actor
from chatledger.ledger.service import Ledger
from chatledger.platform import Platform
from chatledger.privacy import holds, retention
from tests.privacy.seed import CLIENT_IP, Seeded, seed

DPO = Actor("user", "usr_dpo", "admin")
runner = CliRunner()


def later(days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def payload_seqs(ledger: Ledger, *, action: str | None = None) -> list[int]:
    sql = "SELECT p.seq FROM ledger_payloads p JOIN ledger_entries e ON e.seq = p.seq"
    if action:
        return [int(r[0]) for r in ledger.store.query(sql + " WHERE e.action = ?", (action,))]
    return [int(r[0]) for r in ledger.store.query(sql)]


def test_policies_default_set_reset_and_recorded(seeded: Seeded) -> None:
    ledger = seeded.platform.ledger
    found = retention.policies(ledger)
    assert found.days("security") == 2192 and found.days("access") == 2192
    assert found.days("message") == 365 and found.days("conversation") == 365
    assert found.days("ip") == 30 and found.days("document") is None

    changed = retention.set_policy(ledger, DPO, "message", 90)
    assert changed["before"]["days"] == 365 and changed["before"]["source"] == "default"
    assert changed["after"] == {**changed["after"], "days": 90, "source": "global"}
    per_bot = retention.set_policy(ledger, DPO, "message", 30, chatbot_id=seeded.bot_id)
    assert per_bot["before"]["days"] == 90 and per_bot["after"]["source"] == "chatbot"
    found = retention.policies(ledger)
    assert found.days("message", seeded.bot_id) == 30
    assert found.days("message", "bot_other") == 90 and found.days("message") == 90
    forever = retention.set_policy(ledger, DPO, "security", None)
    assert forever["after"]["days"] is None
    reset = retention.set_policy(ledger, DPO, "message", None, reset=True)
    assert reset["after"] == {**reset["after"], "days": 365, "source": "default"}

    record = ledger.read(per_bot["seq"])
    assert record.entry.action == "retention.update" and record.entry.category == "configuration"
    assert record.entry.attributes["before"] == {"days": 90, "source": "global"}
    assert record.entry.attributes["after"] == {"days": 30, "source": "chatbot"}
    assert record.entry.attributes["chatbot_id"] == seeded.bot_id
    assert record.entry.actor["id"] == "usr_dpo"

    with pytest.raises(InvalidInput):
        retention.set_policy(ledger, DPO, "everything", 5)
    for bad in (0, -1, 36_501, True, 1.5):
        with pytest.raises(InvalidInput):
            retention.set_policy(ledger, DPO, "message", bad)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        retention.set_policy(ledger, DPO, "message", 5, chatbot_id="bot_nope")


def test_nothing_is_due_today(seeded: Seeded) -> None:
    ledger = seeded.platform.ledger
    size = ledger.size()
    report = retention.run_expiry(ledger, DPO, dry_run=True)
    assert report.expired == [] and ledger.size() == size
    run = retention.run_expiry(ledger, DPO)
    assert run.erased == 0 and len(run.event_seqs) == 1  # the run itself is on the record
    event = ledger.read(run.event_seqs[0]).entry
    assert event.action == "privacy.retention_expired"
    assert event.attributes["payloads_erased"] == 0
    assert event.attributes["policies"]["ip"] == 30


def test_ip_addresses_expire_after_30_days(seeded: Seeded) -> None:
    ledger = seeded.platform.ledger
    starts = payload_seqs(ledger, action="conversation.start")
    messages = payload_seqs(ledger, action="message.user")
    assert len(starts) == 3 and all(ledger.read(s).payload["ip"] == CLIENT_IP for s in starts)  # type: ignore[index]

    size = ledger.size()
    dry = retention.run_expiry(ledger, DPO, now=later(31), dry_run=True)
    assert ledger.size() == size, "a dry run writes nothing"
    assert {c.seq for c in dry.expired} == set(starts)
    assert {c.rule for c in dry.expired} == {"ip"}
    assert payload_seqs(ledger, action="conversation.start") == starts

    run = retention.run_expiry(ledger, DPO, now=later(31))
    assert run.erased == 3 and run.by_rule() == {"ip": 3}
    (event_seq,) = run.event_seqs
    for seq in starts:
        record = ledger.read(seq)
        assert record.payload_status == "erased" and record.erasure_seq == event_seq
        assert record.entry.attributes["channel"] == "web", "the entry itself stays"
    assert all(ledger.read(s).payload_status == "present" for s in messages)
    erasures = ledger.store.payload_erasures()
    assert {erasures[s].reason for s in starts} == {"retention:ip"}
    event = ledger.read(event_seq).entry
    assert event.attributes["by_rule"] == {"ip": 3}
    assert event.attributes["first_seq"] == min(starts)
    report = ledger.verify()
    assert report.ok, report.to_json()
    assert report.payloads_erased == 3
    # Nothing left to do: a second run erases nothing.
    assert retention.run_expiry(ledger, DPO, now=later(31)).erased == 0


def test_transcripts_expire_after_a_year_and_per_chatbot(seeded: Seeded) -> None:
    ledger = seeded.platform.ledger
    message_payloads = set(payload_seqs(ledger)) - set(
        payload_seqs(ledger, action="chatbot.create")
    )
    assert retention.plan_expiry(ledger, now=later(200)).by_rule() == {"ip": 3}
    retention.set_policy(ledger, DPO, "message", 100, chatbot_id=seeded.bot_id)
    plan = retention.plan_expiry(ledger, now=later(200))
    assert plan.by_rule()["message"] > 10
    run = retention.run_expiry(ledger, DPO, now=later(400))
    kept = set(payload_seqs(ledger))
    assert kept.isdisjoint(message_payloads - kept) and run.erased >= 20
    actions = {ledger.entry(s).action for s in kept}
    assert "message.user" not in actions and "message.answer" not in actions
    assert "chatbot.create" in actions, "configuration is kept forever by default"
    assert ledger.size() > max(message_payloads), "entries are never removed"
    report = ledger.verify()
    assert report.ok, report.to_json()


def test_holds_suspend_expiry(seeded: Seeded) -> None:
    ledger = seeded.platform.ledger
    bob = seeded.conversations["bob"]
    alice = seeded.conversations["alice"]
    on_conv = holds.place_hold(
        ledger, DPO, scope_type="conversation", target=bob, reason="litigation 12"
    )
    on_subject = holds.place_hold(
        ledger, DPO, scope_type="subject", target="user-alice", reason="regulator inquiry"
    )
    run = retention.run_expiry(ledger, DPO, now=later(400))
    held_convs = {bob, alice}
    for seq in payload_seqs(ledger):
        entry = ledger.entry(seq)
        if entry.category in ("message", "conversation"):
            assert entry.attributes.get("conversation_id") in held_convs
    assert run.held == {on_conv.id: 8, on_subject.id: 7}  # bob left a comment too
    assert ledger.read(run.event_seqs[0]).entry.attributes["held_skipped"] == 15

    holds.release_hold(ledger, DPO, on_conv.id, "case closed")
    run = retention.run_expiry(ledger, DPO, now=later(400))
    assert set(run.held) == {on_subject.id}
    remaining = {
        ledger.entry(s).attributes.get("conversation_id")
        for s in payload_seqs(ledger)
        if ledger.entry(s).category in ("message", "conversation")
    }
    assert bob not in remaining and alice in remaining
    assert ledger.verify().ok


def test_hold_placed_mid_run_is_respected(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """Holds are read again inside each batch's transaction."""
    ledger = seeded.platform.ledger
    original = retention.plan_expiry

    def plan_then_hold(
        ledger: Ledger, *, now: datetime | None = None, workspace_id: str | None = None
    ) -> retention.ExpiryReport:
        report = original(ledger, now=now, workspace_id=workspace_id)
        holds.place_hold(
            ledger, DPO, scope_type="chatbot", target=seeded.bot_id, reason="late hold"
        )
        return report

    monkeypatch.setattr(retention, "plan_expiry", plan_then_hold)
    run = retention.run_expiry(ledger, DPO, now=later(400))
    assert run.erased == 0
    event = ledger.read(run.event_seqs[0]).entry
    assert event.attributes["held_skipped"] > 0


def test_job_in_the_server(seeded: Seeded) -> None:
    ledger = seeded.platform.ledger
    retention.set_policy(ledger, DPO, "ip", 1)
    stop = threading.Event()
    size = ledger.size()
    thread = retention.start_jobs(seeded.platform, stop, every=3600, delay=0.05)
    try:
        deadline = time.monotonic() + 10
        while ledger.size() == size and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    last = ledger.entry(ledger.size() - 1)
    assert last.action == "privacy.retention_expired" and last.actor["id"] == "retention-job"
    assert ledger.hold_check is not None, "the job wires legal holds too"


def test_cli(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    platform = Platform.open(Settings.load(data_dir))
    try:
        data = seed(platform)
    finally:
        platform.close()
    common = ["--data-dir", str(data_dir)]

    def cli(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, ["privacy", *args, *common])
        return result.exit_code, result.stdout, result.stderr

    code, out, err = cli("retention", "show")
    assert code == 0, err
    assert "security" in out and "2192" in out and "forever" in out
    code, out, err = cli("retention", "set", "ip", "0")
    assert code != 0 and "days must be" in err
    code, out, err = cli("retention", "set", "ip", "7", "--json")
    assert code == 0, err
    assert json.loads(out)["after"]["days"] == 7
    code, out, _ = cli("retention", "set", "message", "10", "--chatbot", data.bot_id)
    assert code == 0 and "for " + data.bot_id in out
    code, out, _ = cli("retention", "show", "--chatbot", data.bot_id, "--json")
    shown = {p["rule"]: p for p in json.loads(out)["policies"]}
    assert shown["message"]["days"] == 10 and shown["message"]["source"] == "chatbot"
    code, out, _ = cli("retention", "set", "ip", "default")
    assert code == 0 and "30 (default)" in out
    code, out, err = cli("retention", "run", "--dry-run")
    assert code == 0 and "would erase 0 payloads" in err
    code, out, err = cli("retention", "run", "--json")
    assert code == 0 and json.loads(out)["event_seqs"]


def test_workspace_policies_stay_in_their_workspace(seeded: Seeded) -> None:
    platform = seeded.platform
    ledger = platform.ledger
    other = seed(platform, platform.identity.create_workspace("Other", Actor("system", "t")))
    retention.set_policy(ledger, DPO, "message", 200)  # the deployment (operator, CLI)
    mine = retention.set_policy(ledger, DPO, "message", 20, workspace_id=seeded.workspace_id)
    assert mine["before"]["source"] == "global" and mine["after"]["source"] == "workspace"
    assert ledger.read(mine["seq"]).entry.attributes["workspace_id"] == seeded.workspace_id
    retention.set_policy(ledger, DPO, "message", 10, chatbot_id=other.bot_id)

    found = retention.policies(ledger)
    assert found.days("message", seeded.bot_id) == 20  # the workspace's, not the deployment's
    assert found.days("message", other.bot_id) == 10  # its own chatbot policy
    assert found.days("message") == 200  # no chatbot: the deployment's
    assert [p.chatbot_id for p in found.chatbot_overrides(seeded.workspace_id)] == []
    assert [p.chatbot_id for p in found.chatbot_overrides(other.workspace_id)] == [other.bot_id]
    assert [p.workspace_id for p in found.workspace_overrides()] == [seeded.workspace_id]

    # A workspace's run lists and erases only what its own chatbots recorded.
    report = retention.run_expiry(
        ledger, DPO, dry_run=True, now=later(100), workspace_id=other.workspace_id
    )
    bots = {c.chatbot_id for c in report.expired}
    assert bots == {other.bot_id}
    everything = retention.run_expiry(ledger, DPO, dry_run=True, now=later(100))
    assert {seeded.bot_id, other.bot_id} <= {c.chatbot_id for c in everything.expired}
    real = retention.run_expiry(ledger, DPO, now=later(100), workspace_id=other.workspace_id)
    assert real.erased == len(report.expired)
    still_mine = retention.run_expiry(
        ledger, DPO, dry_run=True, now=later(100), workspace_id=seeded.workspace_id
    )
    assert still_mine.expired and {c.chatbot_id for c in still_mine.expired} == {seeded.bot_id}
    assert ledger.verify().ok
