"""The ``users``, ``keys`` and ``chatbots`` commands: an unknown ``--workspace`` is an error
(one line, non-zero), and text output never shows Python's ``None``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform

runner = CliRunner()


@pytest.fixture
def bot(data_dir: Path) -> tuple[str, str]:
    """(workspace id, chatbot id): a chatbot with two configuration versions."""
    platform = Platform.open(Settings.load(data_dir))
    try:
        from chatledger.cli.admin import default_workspace

        ws = default_workspace(platform, None)
        op = system_principal(ws)
        made = platform.chatbots.create(op, "Bot", {"system_prompt": "one"})
        platform.chatbots.update(
            op, made.id, {"system_prompt": "two", "model": {"base_url": "http://m.example"}}
        )
        return ws, made.id
    finally:
        platform.close()


def run(data_dir: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)], input=input)
    return result.exit_code, result.stdout, result.stderr


def commands(bot_id: str) -> list[tuple[list[str], str | None]]:
    return [
        (["chatbots", "list"], None),
        (["chatbots", "history", bot_id], None),
        (["chatbots", "config", bot_id, "--at", "2030-01-01T00:00:00Z"], None),
        (["chatbots", "diff", bot_id, "--from", "1", "--to", "2"], None),
        (["keys", "create", "--role", "viewer"], None),
        (["users", "create", "--email", "w@example.com", "--role", "viewer"], "a password 123\n"),
    ]


def test_an_unknown_workspace_is_an_error(data_dir: Path, bot: tuple[str, str]) -> None:
    ws, bot_id = bot
    for args, given in commands(bot_id):
        code, out, err = run(data_dir, *args, "--workspace", "ws_nope", input=given)
        assert code != 0, args
        assert out == "", args
        lines = err.strip().splitlines()
        assert lines == ["error: no workspace 'ws_nope'"], (args, err)
    # nothing was created in a workspace that does not exist
    platform = Platform.open(Settings.load(data_dir))
    try:
        assert not platform.ledger.store.query(
            "SELECT 1 FROM users WHERE email = ?", ("w@example.com",)
        )
        assert not platform.ledger.store.query(
            "SELECT 1 FROM memberships WHERE workspace_id = ?", ("ws_nope",)
        )
        assert not platform.ledger.store.query(
            "SELECT 1 FROM api_keys WHERE workspace_id = ?", ("ws_nope",)
        )
    finally:
        platform.close()
    # the workspace that exists, named, still works
    for args, given in commands(bot_id):
        code, out, err = run(data_dir, *args, "--workspace", ws, input=given)
        assert code == 0, (args, err)
        assert out.strip(), args


def test_text_output_never_shows_none(data_dir: Path, bot: tuple[str, str]) -> None:
    _, bot_id = bot
    outputs = []
    for args, given in commands(bot_id):
        code, out, err = run(data_dir, *args, input=given)
        assert code == 0, (args, err)
        outputs.append(out)
    code, out, err = run(data_dir, "keys", "create", "--role", "viewer", "--json")
    assert code == 0, err
    key = json.loads(out)
    assert key["expires_at"] is None and key["last_used_at"] is None
    code, out, err = run(data_dir, "keys", "revoke", key["id"])
    assert code == 0, err
    outputs.append(out)
    for out in outputs:
        assert "None" not in out, out
    assert f"revoked clk_{key['id']} (viewer, workspace " in outputs[-1]
