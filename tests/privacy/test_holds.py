"""Legal holds and data-subject erasure: holds are events, they refuse erasure of what they
cover (in the library, the CLI and the API), and erasure completes with the ledger verifying."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.errors import Conflict, InvalidInput, LegalHoldActive, NotFound
from chatledger.events import Actor
from chatledger.ledger.writer import WorkContext
from chatledger.platform import Platform
from chatledger.privacy import holds, retention
from tests.api.server import LiveServer, live_server
from tests.privacy.seed import Seeded, seed

SYSTEM_TESTS = Actor("system", "tests")

DPO = Actor("user", "usr_dpo", "admin")
runner = CliRunner()


def test_place_list_release(seeded: Seeded) -> None:
    ledger = seeded.platform.ledger
    conv = seeded.conversations["carol"]
    hold = holds.place_hold(
        ledger, DPO, scope_type="conversation", target=conv, reason="claim", reference="C-1"
    )
    assert hold.active and hold.scope_id == conv
    placed = ledger.read(hold.placed_seq)
    assert placed.entry.action == "privacy.hold_placed"
    assert placed.entry.attributes["conversation_id"] == conv
    assert placed.entry.attributes["chatbot_id"] == seeded.bot_id
    assert placed.payload == {"reason": "claim", "reference": "C-1"}

    on_subject = holds.place_hold(
        ledger, DPO, scope_type="subject", target="visitor-bob", reason="subpoena"
    )
    assert on_subject.scope_id == ledger.subject_ref("visitor-bob")
    assert holds.hold_subject(ledger, on_subject) == "visitor-bob"
    assert [h.id for h in holds.list_holds(ledger)] == [hold.id, on_subject.id]

    released = holds.release_hold(ledger, DPO, hold.id, "settled")
    assert not released.active and released.released_by == "usr_dpo"
    event = ledger.read(int(released.released_seq or 0))
    assert event.entry.action == "privacy.hold_released"
    assert event.entry.attributes["placed_seq"] == hold.placed_seq
    assert holds.get_hold(ledger, hold.id).release_reason == "settled"
    assert [h.id for h in holds.list_holds(ledger)] == [on_subject.id]
    assert [h.id for h in holds.list_holds(ledger, status="released")] == [hold.id]
    page = holds.list_holds(ledger, status="all", limit=1)
    assert [h.id for h in page] == [hold.id]
    assert [h.id for h in holds.list_holds(ledger, status="all", after=hold.id)] == [on_subject.id]

    with pytest.raises(Conflict):
        holds.release_hold(ledger, DPO, hold.id, "again")
    with pytest.raises(NotFound):
        holds.release_hold(ledger, DPO, "hold_nope", "x")
    with pytest.raises(NotFound):
        holds.place_hold(ledger, DPO, scope_type="conversation", target="conv_x", reason="r")
    with pytest.raises(NotFound):
        holds.place_hold(ledger, DPO, scope_type="chatbot", target="bot_x", reason="r")
    with pytest.raises(InvalidInput):
        holds.place_hold(ledger, DPO, scope_type="workspace", target="w", reason="r")
    with pytest.raises(InvalidInput):
        holds.place_hold(ledger, DPO, scope_type="subject", target="v", reason="")
    assert ledger.verify().ok


@pytest.mark.parametrize("scope", ["subject", "conversation", "chatbot"])
def test_erasure_refused_under_hold_then_allowed(seeded: Seeded, scope: str) -> None:
    ledger = seeded.platform.ledger
    holds.install(seeded.platform)
    target = {
        "subject": "visitor-bob",
        "conversation": seeded.conversations["bob"],
        "chatbot": seeded.bot_id,
    }[scope]
    hold = holds.place_hold(ledger, DPO, scope_type=scope, target=target, reason="litigation")
    size = ledger.size()
    with pytest.raises(LegalHoldActive) as refused:
        ledger.erase_subject("visitor-bob", DPO, reason="art. 17 request 7")
    assert hold.id in refused.value.message and refused.value.status == 409
    assert ledger.size() == size, "a refused erasure writes nothing"
    assert (
        ledger.read(
            ledger.store.query(
                "SELECT seq FROM ledger_entries WHERE action = 'message.user' AND subject = ?",
                (ledger.subject_ref("visitor-bob"),),
            )[0][0]
        ).payload_status
        == "present"
    )

    holds.release_hold(ledger, DPO, hold.id, "released by the court")
    receipt = ledger.erase_subject("visitor-bob", DPO, reason="art. 17 request 7")
    erased = ledger.read(receipt.seq).entry.attributes["payloads_erased"]
    assert erased >= 7
    report = ledger.verify()
    assert report.ok, report.to_json()


def test_hold_on_someone_else_does_not_block(seeded: Seeded) -> None:
    ledger = seeded.platform.ledger
    holds.install_on_ledger(ledger)
    holds.install_on_ledger(ledger)  # idempotent
    holds.place_hold(
        ledger, DPO, scope_type="conversation", target=seeded.conversations["alice"], reason="x"
    )
    holds.place_hold(ledger, DPO, scope_type="subject", target="visitor-carol", reason="y")
    ledger.erase_subject("visitor-bob", DPO)
    assert ledger.verify().ok


def test_install_keeps_an_existing_check(seeded: Seeded) -> None:
    ledger = seeded.platform.ledger
    seen: list[str] = []

    def other(ctx: WorkContext, subject: str) -> str | None:
        seen.append(subject)
        return "other rule" if subject == "visitor-carol" else None

    ledger.hold_check = other
    holds.install_on_ledger(ledger)
    with pytest.raises(LegalHoldActive, match="other rule"):
        ledger.erase_subject("visitor-carol", DPO)
    holds.place_hold(ledger, DPO, scope_type="subject", target="visitor-bob", reason="z")
    with pytest.raises(LegalHoldActive, match="hold_"):
        ledger.erase_subject("visitor-bob", DPO)


@pytest.fixture
def closed_world(tmp_path: Path) -> tuple[Path, Seeded, str]:
    data_dir = tmp_path / "data"
    platform = Platform.open(Settings.load(data_dir))
    try:
        data = seed(platform)
        key = str(platform.ledger.verifier)
    finally:
        platform.close()
    return data_dir, data, key


def _cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.stdout, result.stderr


def test_cli_holds_and_erasure(closed_world: tuple[Path, Seeded, str]) -> None:
    data_dir = closed_world[0]
    code, out, err = _cli(
        data_dir,
        "privacy",
        "hold",
        "place",
        "--subject",
        "visitor-bob",
        "--reason",
        "case 4",
        "--json",
    )
    assert code == 0, err
    hold = json.loads(out)
    code, out, _ = _cli(data_dir, "privacy", "hold", "list")
    assert code == 0 and hold["id"] in out
    code, _, err = _cli(data_dir, "privacy", "hold", "place", "--reason", "x")
    assert code == 2 and "exactly one" in err

    code, _, err = _cli(data_dir, "privacy", "erase", "visitor-bob", "--reason", "art. 17")
    assert code != 0 and "legal hold" in err and hold["id"] in err

    code, _, err = _cli(data_dir, "privacy", "hold", "release", hold["id"], "--reason", "done")
    assert code == 0, err
    code, out, _ = _cli(data_dir, "privacy", "hold", "list", "--status", "released", "--json")
    assert [h["id"] for h in json.loads(out)["items"]] == [hold["id"]]
    code, out, err = _cli(data_dir, "privacy", "erase", "visitor-bob", "--json")
    assert code == 0, err
    assert json.loads(out)["payloads_erased"] >= 7
    code, out, err = _cli(data_dir, "ledger", "verify")
    assert code == 0, err


def test_cli_ledger_erase_subject_respects_holds(closed_world: tuple[Path, Seeded, str]) -> None:
    data_dir, data, _ = closed_world
    code, _, err = _cli(
        data_dir, "privacy", "hold", "place", "--chatbot", data.bot_id, "--reason", "audit"
    )
    assert code == 0, err
    code, _, err = _cli(data_dir, "ledger", "erase-subject", "visitor-carol")
    assert code != 0 and "legal hold" in err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LiveServer, Seeded]]:
    with live_server(tmp_path / "data") as live:
        yield live, seed(live.platform, live.workspace_id)


def test_api_holds_and_erasures(served: tuple[LiveServer, Seeded]) -> None:
    live, data = served
    with live.client() as api:
        placed = api.post(
            "/privacy/holds",
            json={"subject": "visitor-carol", "reason": "dispute", "reference": "D-3"},
        )
        assert placed.status_code == 201, placed.text
        hold = placed.json()
        assert hold["subject"] == "visitor-carol" and hold["active"]
        by_conv = api.post(
            "/privacy/holds",
            json={"conversation_id": data.conversations["alice"], "reason": "complaint"},
        )
        assert by_conv.status_code == 201, by_conv.text
        bad = api.post("/privacy/holds", json={"subject": "x", "chatbot_id": "y", "reason": "r"})
        assert bad.status_code == 422
        listed = api.get("/privacy/holds", params={"limit": 1}).json()
        assert [h["id"] for h in listed["items"]] == [hold["id"]] and listed["next_cursor"]
        rest = api.get("/privacy/holds", params={"cursor": listed["next_cursor"]}).json()
        assert [h["id"] for h in rest["items"]] == [by_conv.json()["id"]]
        assert api.get(f"/privacy/holds/{hold['id']}").json()["reference"] == "D-3"

        refused = api.post("/privacy/erasures", json={"subject": "visitor-carol", "reason": "r"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "legal_hold"
        refused = api.post("/privacy/erasures", json={"subject": "user-alice"})
        assert refused.status_code == 409, "a hold on one of their conversations blocks it too"
        allowed = api.post("/privacy/erasures", json={"subject": "visitor-bob", "reason": "r1"})
        assert allowed.status_code == 201, allowed.text
        assert allowed.json()["payloads_erased"] >= 7

        released = api.post(f"/privacy/holds/{hold['id']}/release", json={"reason": "over"})
        assert released.status_code == 200 and not released.json()["active"]
        again = api.post(f"/privacy/holds/{hold['id']}/release", json={"reason": "over"})
        assert again.status_code == 409
        done = api.post("/privacy/erasures", json={"subject": "visitor-carol"})
        assert done.status_code == 201, done.text
        verified = api.get("/audit/verify").json()
        assert verified["ok"], verified
        live_only = api.get("/audit/verify", params={"live": "true"}).json()
        assert live_only["ok"] and live_only["from_seq"] == 0  # nothing archived here
    with live.client(live.key("auditor")) as api:
        assert api.get("/privacy/holds").status_code == 403
        assert api.post("/privacy/erasures", json={"subject": "user-alice"}).status_code == 403


def test_api_retention(served: tuple[LiveServer, Seeded]) -> None:
    live, data = served
    with live.client() as api:
        shown = api.get("/privacy/retention").json()
        rules = {p["rule"]: p for p in shown["policies"]}
        assert rules["ip"]["days"] == 30 and rules["security"]["days"] == 2192
        changed = api.put("/privacy/retention/message", json={"days": 180})
        assert changed.status_code == 200, changed.text
        assert changed.json()["before"]["days"] == 365 and changed.json()["after"]["days"] == 180
        per_bot = api.put(
            "/privacy/retention/conversation", json={"days": None, "chatbot_id": data.bot_id}
        )
        assert per_bot.status_code == 200 and per_bot.json()["after"]["days"] is None
        shown = api.get("/privacy/retention", params={"chatbot_id": data.bot_id}).json()
        rules = {p["rule"]: p for p in shown["policies"]}
        assert rules["conversation"]["source"] == "chatbot" and rules["message"]["days"] == 180
        assert shown["chatbot_overrides"][0]["chatbot_id"] == data.bot_id
        assert api.put("/privacy/retention/nope", json={"days": 5}).status_code == 422
        assert api.put("/privacy/retention/ip", json={"days": 0}).status_code == 422
        reset = api.delete("/privacy/retention/message")
        assert reset.json()["after"]["days"] == 365
        dry = api.post("/privacy/retention/run", json={"dry_run": True})
        assert dry.status_code == 200 and dry.json()["dry_run"] and dry.json()["event_seqs"] == []
        real = api.post("/privacy/retention/run", json={"dry_run": False})
        assert real.status_code == 200 and len(real.json()["event_seqs"]) == 1
    with live.client(live.key("editor")) as api:
        assert api.put("/privacy/retention/ip", json={"days": 1}).status_code == 403
    seqs = live.platform.ledger.store.query(
        "SELECT seq FROM ledger_entries WHERE action = 'retention.update'"
    )
    assert len(seqs) == 3


def test_api_erasure_stays_in_its_workspace(served: tuple[LiveServer, Seeded]) -> None:
    live, _ = served
    other_ws = live.platform.identity.create_workspace("Other", Actor("system", "tests"))
    seed(live.platform, other_ws)  # the same visitor ids talked to another workspace's bot
    with live.client() as api:
        refused = api.post("/privacy/erasures", json={"subject": "visitor-bob"})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
        unknown = api.post("/privacy/erasures", json={"subject": "never-seen"})
        assert unknown.status_code == 201 and unknown.json()["payloads_erased"] == 0


def test_api_retention_is_per_workspace(served: tuple[LiveServer, Seeded]) -> None:
    live, data = served
    other = seed(live.platform, live.platform.identity.create_workspace("Other", SYSTEM_TESTS))
    retention.set_policy(live.platform.ledger, SYSTEM_TESTS, "message", 15, chatbot_id=other.bot_id)
    with live.client() as api:
        changed = api.put("/privacy/retention/message", json={"days": 60}).json()
        assert changed["after"]["source"] == "workspace"
        assert changed["workspace_id"] == data.workspace_id
        shown = api.get("/privacy/retention").json()
        assert shown["chatbot_overrides"] == []  # the other workspace's policy is not shown
        rules = {p["rule"]: p for p in shown["policies"]}
        assert rules["message"]["days"] == 60
        dry = api.post("/privacy/retention/run", json={"dry_run": True}).json()
        assert all(item["chatbot_id"] == data.bot_id for item in dry["items"])
    found = retention.policies(live.platform.ledger)
    assert found.days("message", other.bot_id) == 15  # untouched by the first workspace
    assert found.days("message", data.bot_id) == 60
    assert found.days("message") == 365  # the deployment's default is untouched
