"""Erasing a subject also clears their id from the chat tables, in the same transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.errors import LegalHoldActive
from chatledger.events import Actor
from chatledger.platform import Platform
from chatledger.privacy import holds
from tests.privacy.seed import Seeded, seed

DPO = Actor("user", "dpo", "admin")


def _owners(platform: Platform) -> dict[str, tuple[str | None, str | None]]:
    rows = platform.ledger.store.query("SELECT id, visitor_id, user_id FROM conversations")
    return {str(cid): (visitor, user) for cid, visitor, user in rows}


def test_erasure_clears_the_visitor_and_user_ids(seeded: Seeded) -> None:
    platform = seeded.platform
    bob, alice = seeded.conversations["bob"], seeded.conversations["alice"]
    assert _owners(platform)[bob] == ("visitor-bob", None)

    receipt = platform.ledger.erase_subject("visitor-bob", DPO, reason="art. 17")
    owners = _owners(platform)
    assert owners[bob] == (None, None)
    assert owners[alice] == (None, "user-alice")  # someone else's conversation is untouched
    event = platform.ledger.read(receipt.seq).entry
    assert event.attributes["rows_scrubbed"] == {"conversations": 1}
    assert "visitor-bob" not in event.body.decode()

    platform.ledger.erase_subject("user-alice", DPO)
    assert _owners(platform)[alice] == (None, None)
    assert platform.ledger.verify().ok


def test_a_refused_erasure_clears_nothing(seeded: Seeded) -> None:
    platform = seeded.platform
    holds.place_hold(
        platform.ledger, DPO, scope_type="subject", target="visitor-bob", reason="litigation"
    )
    with pytest.raises(LegalHoldActive):
        platform.ledger.erase_subject("visitor-bob", DPO)
    assert _owners(platform)[seeded.conversations["bob"]] == ("visitor-bob", None)


def test_the_cli_erasure_reaches_the_chat_tables_too(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    platform = Platform.open(Settings.load(data_dir))
    try:
        data = seed(platform)
    finally:
        platform.close()
    result = CliRunner().invoke(
        app, ["privacy", "erase", "visitor-carol", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.stderr
    platform = Platform.open(Settings.load(data_dir))
    try:
        assert _owners(platform)[data.conversations["carol"]] == (None, None)
    finally:
        platform.close()
