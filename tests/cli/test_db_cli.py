"""``chatledger db upgrade`` applies pending migrations once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatledger.cli.main import app


@pytest.mark.sqlite_only(
    reason="a fresh data directory's SQLite file; on PostgreSQL the operator's setup migrates, "
    "and tests/postgres/test_pg_migrations.py runs db upgrade as the owner"
)
def test_db_upgrade_applies_each_migration_once(data_dir: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["db", "upgrade", "--data-dir", str(data_dir), "--json"])
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout)["applied"][:3] == [1, 2, 3]
    again = runner.invoke(app, ["db", "upgrade", "--data-dir", str(data_dir), "--json"])
    assert json.loads(again.stdout)["applied"] == []
