"""``chatledger users``, ``keys`` and ``chatbots`` (configuration history) commands."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform

runner = CliRunner()


def run(data_dir: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)], input=input)
    return result.exit_code, result.stdout, result.stderr


def test_users_and_keys(data_dir: Path) -> None:
    code, out, err = run(
        data_dir,
        "users",
        "create",
        "--email",
        "Ann@Example.com",
        "--role",
        "auditor",
        "--json",
        input="a long enough password\n",
    )
    assert code == 0, err
    user = json.loads(out)
    assert user["email"] == "ann@example.com" and "password" not in user
    code, out, err = run(
        data_dir, "users", "create", "--email", "bob@example.com", "--role", "viewer"
    )
    assert code == 0, err
    assert "password:" in out  # generated and shown once
    code, _, err = run(
        data_dir,
        "users",
        "create",
        "--email",
        "ann@example.com",
        "--role",
        "viewer",
        input="another long password\n",
    )
    assert code != 0 and "already exists" in err
    code, _, err = run(
        data_dir,
        "users",
        "create",
        "--email",
        "x@example.com",
        "--role",
        "pope",
        input="another long password\n",
    )
    assert code == 2 and "unknown role" in err
    code, out, err = run(data_dir, "keys", "create", "--role", "auditor", "--json")
    assert code == 0, err
    key = json.loads(out)
    assert key["key"].startswith("clk_") and key["role"] == "auditor"
    code, out, err = run(data_dir, "keys", "revoke", key["id"], "--json")
    assert code == 0 and json.loads(out)["revoked_at"]


def test_configuration_history(data_dir: Path) -> None:
    platform = Platform.open(Settings.load(data_dir))
    try:
        from chatledger.cli.admin import default_workspace

        ws = default_workspace(platform, None)
        op = system_principal(ws)
        bot = platform.chatbots.create(op, "Bot", {"system_prompt": "one"})
        first = bot.updated_at
        platform.chatbots.update(op, bot.id, {"system_prompt": "two", "retrieval": {"top_k": 2}})
    finally:
        platform.close()
    code, out, err = run(data_dir, "chatbots", "history", bot.id, "--json")
    assert code == 0, err
    assert [v["version"] for v in json.loads(out)] == [1, 2]
    code, out, err = run(data_dir, "chatbots", "config", bot.id, "--at", first)
    assert json.loads(out)["config"]["system_prompt"] == "one"
    code, out, err = run(data_dir, "chatbots", "diff", bot.id, "--from", "1", "--to", "2")
    assert code == 0, err
    assert 'system_prompt: "one" -> "two"' in out and "retrieval.top_k: 4 -> 2" in out
    code, _, err = run(data_dir, "chatbots", "diff", bot.id, "--from", "1", "--to", "9")
    assert code != 0 and "no version 9" in err
    code, _, err = run(data_dir, "chatbots", "config", bot.id, "--at", "1999-01-01T00:00:00Z")
    assert code != 0 and "did not exist" in err
