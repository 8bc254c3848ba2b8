"""The configuration in force at a moment: ``--at`` / ``?at=`` is parsed as ISO 8601 and
compared as a moment in time, never as a string; the CLI and the API agree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatledger.chatbots import service as chatbot_service
from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.errors import InvalidInput, NotFound
from chatledger.identity.principal import system_principal
from chatledger.ledger.entry import utc_timestamp
from chatledger.platform import Platform
from tests.api.server import LiveServer, live_server

runner = CliRunner()

# v1 .. v4 of one chatbot, an hour apart at most
VERSION_TIMES = [
    "2026-11-29T02:00:00.000000Z",
    "2026-11-29T02:30:00.000000Z",
    "2026-11-29T02:45:00.000000Z",
    "2026-11-29T03:00:00.000000Z",
]

# (at, the version in force); None: the chatbot did not exist yet
CASES = [
    ("2026-11-29T02:10:30Z", 1),
    ("2026-11-29T03:10:30+01:00", 1),  # the same moment as 02:10:30Z (was v4)
    ("2026-11-28T21:40:00-05:00", 2),  # 02:40Z (was "did not exist")
    ("2026-11-29T02:10:30", 1),  # naive: UTC
    ("2026-11-29T02:30:00Z", 2),  # in force from the very moment it was saved
    ("2026-11-29T02:29:59.999999Z", 1),
    ("2026-11-29T03:44:59.5+00:45", 3),  # 02:59:59.5Z
    ("2026-11-29t03:30:00z", 4),
    ("2026-11-29T01:59:59Z", None),
    ("2026-11-29T03:00:00+02:00", None),  # 01:00Z (as a string it sorts after v4)
]

BAD = [
    "yesterday",
    "garbage",
    "2026-11-29",  # a date is not a moment
    "2026-13-01T00:00:00Z",
    "2026-11-29T25:00:00Z",
    "2026-11-29T02:00:00+25:00",
    "zzzz-11-29T02:00:00Z",
    "",
    "0001-01-01T00:00:00+01:00",  # before the first representable UTC moment
]


def _with_versions(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> str:
    workspace = platform.identity.workspaces()[0]["id"]
    op = system_principal(str(workspace))
    times = iter(VERSION_TIMES)

    def fake_timestamp(moment: datetime | None = None) -> str:
        return utc_timestamp(moment) if moment is not None else next(times)

    monkeypatch.setattr(chatbot_service, "utc_timestamp", fake_timestamp)
    bot = platform.chatbots.create(op, "Bot", {"system_prompt": "v1"})
    for n in (2, 3, 4):
        platform.chatbots.update(op, bot.id, {"system_prompt": f"v{n}"})
    monkeypatch.setattr(chatbot_service, "utc_timestamp", utc_timestamp)
    versions = platform.chatbots.versions(op, bot.id)
    assert [v["created_at"] for v in versions] == VERSION_TIMES
    return bot.id


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path / "data") as live:
        yield live


def test_parse_moment_converts_offsets_to_utc() -> None:
    from chatledger.chatbots.service import parse_moment

    assert parse_moment("2026-11-29T03:10:30+01:00") == datetime(
        2026, 11, 29, 2, 10, 30, tzinfo=UTC
    )
    assert parse_moment("2026-11-29T02:10:30") == datetime(2026, 11, 29, 2, 10, 30, tzinfo=UTC)
    assert parse_moment("2026-11-29T02:10:30.123456789Z").microsecond == 123456
    for bad in BAD:
        with pytest.raises(InvalidInput):
            parse_moment(bad)


def test_service_compares_moments_not_strings(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = Platform.open(Settings.load(data_dir))
    try:
        platform.identity.create_workspace("W", system_principal("x").actor)
        bot_id = _with_versions(platform, monkeypatch)
        op = system_principal(str(platform.identity.workspaces()[0]["id"]))
        for at, expected in CASES:
            if expected is None:
                with pytest.raises(NotFound, match="did not exist"):
                    platform.chatbots.version_at(op, bot_id, at)
            else:
                found = platform.chatbots.version_at(op, bot_id, at)
                assert found["version"] == expected, at
                assert found["config"]["system_prompt"] == f"v{expected}"
        for bad in BAD:
            with pytest.raises(InvalidInput):
                platform.chatbots.version_at(op, bot_id, bad)
    finally:
        platform.close()


def test_cli_and_api_agree(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    bot_id = _with_versions(server.platform, monkeypatch)
    data_dir = server.platform.settings.data_dir
    with server.client() as api:
        for at, expected in CASES:
            result = runner.invoke(
                app, ["chatbots", "config", bot_id, "--at", at, "--data-dir", str(data_dir)]
            )
            response = api.get(f"/chatbots/{bot_id}/config", params={"at": at})
            if expected is None:
                assert result.exit_code == 1, (at, result.stdout)
                assert "did not exist" in result.stderr and result.stdout == ""
                assert len(result.stderr.strip().splitlines()) == 1
                assert response.status_code == 404, at
                error = response.json()["error"]
                assert error["code"] == "not_found" and "did not exist" in error["message"]
                assert error["request_id"]
            else:
                assert result.exit_code == 0, (at, result.stderr)
                assert json.loads(result.stdout)["version"] == expected, at
                assert response.status_code == 200, (at, response.text)
                assert response.json()["version"] == expected, at
        for bad in BAD:
            result = runner.invoke(
                app, ["chatbots", "config", bot_id, "--at", bad, "--data-dir", str(data_dir)]
            )
            assert result.exit_code == 2, (bad, result.stdout)
            assert result.stdout == ""
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: at must be an ISO 8601"), bad
            response = api.get(f"/chatbots/{bot_id}/config", params={"at": bad})
            assert response.status_code == 422, bad
            error = response.json()["error"]
            assert error["code"] == "invalid_input", bad
            assert set(error) == {"code", "message", "details", "request_id"}
            assert error["message"].startswith("at must be an ISO 8601")


def test_cli_help_says_a_naive_moment_is_utc() -> None:
    result = runner.invoke(app, ["chatbots", "config", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "without an offset it is UTC" in " ".join(result.stdout.split())
