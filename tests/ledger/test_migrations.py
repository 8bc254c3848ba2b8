"""Schema migrations on SQLite, run by Alembic: fresh files reach the head, databases the
previous runner migrated are adopted, and a migration that fails leaves nothing half done."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.errors import StorageError
from chatledger.store import sqlite_schema
from chatledger.store.migrations import file_versions, head_version, revision_id
from chatledger.store.sqlite import SqliteStore, connect
from chatledger.store.sqlite_schema import MIGRATIONS, Migration, apply_migrations

pytestmark = pytest.mark.sqlite_only(
    reason="the SQLite file's migrations; on PostgreSQL: tests/postgres/test_pg_migrations.py"
)

VERSIONS = [m.version for m in MIGRATIONS]
HEAD = revision_id(head_version(VERSIONS))


def alembic_version(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def recorded(conn: sqlite3.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def old_runner(path: Path, versions: list[int]) -> None:
    """What the previous runner (before Alembic) left behind: ``schema_migrations`` with one
    row per applied version, no ``alembic_version``. A frozen copy of its loop."""
    conn = connect(path)
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        for migration in MIGRATIONS:
            if migration.version not in versions:
                continue
            conn.execute("BEGIN IMMEDIATE")
            if callable(migration.sql):
                migration.sql(conn)
            else:
                for statement in sqlite_schema._split(migration.sql):
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, '2024-05-01T00:00:00.000Z')",
                (migration.version, migration.name),
            )
            conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chatledger.db"


def test_revision_files_follow_the_numbered_migrations() -> None:
    assert file_versions() == (1, 2, 3, 10, 11, 12, 13, 14)
    assert set(VERSIONS) <= set(file_versions())


def test_a_fresh_file_reaches_the_head(db: Path) -> None:
    store = SqliteStore(db)
    store.close()
    conn = connect(db)
    try:
        assert alembic_version(conn) == [HEAD]
        assert recorded(conn) == VERSIONS
        assert {"ledger_entries", "retrieval_chunks", "audit_facets"} <= tables(conn)
        assert apply_migrations(conn) == []
        assert conn.isolation_level is None and not conn.in_transaction
    finally:
        conn.close()


def test_apply_migrations_reports_what_it_applied(db: Path) -> None:
    conn = connect(db)
    try:
        assert apply_migrations(conn) == VERSIONS
        assert apply_migrations(conn) == []
        assert alembic_version(conn) == [HEAD]
    finally:
        conn.close()


def test_opening_a_current_store_asks_one_question_and_imports_no_alembic(db: Path) -> None:
    SqliteStore(db).close()
    code = (
        "import sys\n"
        "from chatledger.store.sqlite import SqliteStore\n"
        f"SqliteStore({str(db)!r}).close()\n"
        "loaded = {'alembic', 'sqlalchemy'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    statements: list[str] = []
    conn = connect(db)
    try:
        conn.set_trace_callback(statements.append)
        assert apply_migrations(conn) == []
    finally:
        conn.close()
    assert len(statements) == 1, statements


def test_a_database_of_the_previous_runner_is_adopted(db: Path) -> None:
    old_runner(db, VERSIONS)
    conn = connect(db)
    try:
        assert "alembic_version" not in tables(conn)
        before = conn.execute("SELECT * FROM schema_migrations ORDER BY 1").fetchall()
        assert apply_migrations(conn) == []
        assert alembic_version(conn) == [HEAD]
        assert conn.execute("SELECT * FROM schema_migrations ORDER BY 1").fetchall() == before
    finally:
        conn.close()


def test_an_older_database_is_adopted_then_upgraded_with_its_data(db: Path) -> None:
    old_runner(db, [1, 2, 3])
    conn = connect(db)
    try:
        conn.execute("INSERT INTO ledger_checkpoints VALUES (1, 'then', 'kept')")
    finally:
        conn.close()
    store = SqliteStore(db)
    try:
        assert store.query("SELECT version_num FROM alembic_version") == [(HEAD,)]
        assert [r[0] for r in store.query("SELECT version FROM schema_migrations")] == VERSIONS
        assert store.query("SELECT note FROM ledger_checkpoints") == [("kept",)]
        assert store.query("SELECT count(*) FROM audit_facets") == [(0,)]
    finally:
        store.close()


def test_a_version_recorded_out_of_order_fills_the_gap(db: Path) -> None:
    """The previous runner applied whatever was not recorded: 1, 2, 3, 11, 12 without 10 is
    possible. The pointer goes to 0003; 10 runs, 11 and 12 are not run again."""
    old_runner(db, [v for v in VERSIONS if v != 10])
    conn = connect(db)
    try:
        assert apply_migrations(conn) == [10]
        assert recorded(conn) == VERSIONS
        assert alembic_version(conn) == [HEAD]
    finally:
        conn.close()


def test_a_version_added_to_a_passed_revision_is_applied(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revision that was a no-op for this backend gets its SQL in a later release (as
    PostgreSQL's 10 may): the database at the head applies it rather than skip it."""
    without_10 = [m for m in MIGRATIONS if m.version != 10]
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", without_10)
    SqliteStore(db).close()
    monkeypatch.undo()
    conn = connect(db)
    try:
        assert alembic_version(conn) == [HEAD] and 10 not in recorded(conn)
        assert apply_migrations(conn) == [10]
        assert alembic_version(conn) == [HEAD] and recorded(conn) == VERSIONS
    finally:
        conn.close()


BROKEN_SCRIPT = """
CREATE TABLE half_done (id INTEGER PRIMARY KEY);
CREATE TRIGGER half_done_no_delete BEFORE DELETE ON half_done
BEGIN SELECT RAISE(ABORT, 'no'); END;
INSERT INTO half_done VALUES (1);
INSERT INTO no_such_table VALUES (1);
"""


def test_a_failing_migration_leaves_the_previous_revision(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SqliteStore(db).close()
    later = head_version(VERSIONS) + 1
    good = Migration(later, "good", "CREATE TABLE good_things (id INTEGER PRIMARY KEY);")
    broken = Migration(later + 1, "broken", BROKEN_SCRIPT)
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", [*MIGRATIONS, good, broken])
    conn = connect(db)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            apply_migrations(conn)
        assert not conn.in_transaction
        # the good one committed with its record; of the broken one, nothing at all
        assert alembic_version(conn) == [revision_id(later)]
        assert recorded(conn) == [*VERSIONS, later]
        assert "good_things" in tables(conn)
        assert "half_done" not in tables(conn)
        assert conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'half%'"
        ).fetchone() == (0,)
        # fixed in the next release: the upgrade goes on from where it stopped
        fixed = Migration(later + 1, "fixed", "CREATE TABLE half_done (id INTEGER PRIMARY KEY);")
        monkeypatch.setattr(sqlite_schema, "MIGRATIONS", [*MIGRATIONS, good, fixed])
        assert apply_migrations(conn) == [later + 1]
        assert alembic_version(conn) == [revision_id(later + 1)]
    finally:
        conn.close()


def test_a_failure_while_opening_a_store_is_a_storage_error(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = Migration(head_version(VERSIONS) + 1, "broken", "SELECT * FROM no_such_table;")
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(StorageError, match="no_such_table"):
        SqliteStore(db)
    conn = connect(db)
    try:
        assert alembic_version(conn) == [HEAD]  # everything before it is in place
    finally:
        conn.close()


def test_a_registered_migration_without_a_file_must_come_last(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    misplaced = Migration(5, "misplaced", "CREATE TABLE misplaced (id INTEGER);")
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", [*MIGRATIONS, misplaced])
    with pytest.raises(StorageError, match="migration 5 has no revision file"):
        SqliteStore(db)


def test_a_database_of_a_newer_release_opens(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rolling upgrade: the new release migrated to revision 0099; the old one still opens
    the file and applies nothing."""
    newer = Migration(99, "newer", "CREATE TABLE newer_things (id INTEGER PRIMARY KEY);")
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", [*MIGRATIONS, newer])
    SqliteStore(db).close()
    monkeypatch.undo()
    conn = connect(db)
    try:
        assert alembic_version(conn) == ["0099"]
        assert apply_migrations(conn) == []
    finally:
        conn.close()


def test_stores_opening_a_fresh_file_at_once_migrate_it_once(db: Path) -> None:
    errors: list[BaseException] = []
    stores: list[SqliteStore] = []

    def start() -> None:
        try:
            stores.append(SqliteStore(db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert stores[0].query("SELECT version_num FROM alembic_version") == [(HEAD,)]
        assert [r[0] for r in stores[0].query("SELECT version FROM schema_migrations")] == VERSIONS
    finally:
        for store in stores:
            store.close()


def test_db_upgrade_adopts_and_upgrades_an_existing_data_directory(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    old_runner(data_dir / "chatledger.db", [1, 2, 3])
    runner = CliRunner()
    first = runner.invoke(app, ["db", "upgrade", "--data-dir", str(data_dir)])
    assert first.exit_code == 0, first.stderr
    assert first.stdout.strip() == "applied migrations: 10, 11, 12, 13"
    again = runner.invoke(app, ["db", "upgrade", "--data-dir", str(data_dir), "--json"])
    assert json.loads(again.stdout) == {"applied": []}
    conn = connect(data_dir / "chatledger.db")
    try:
        assert alembic_version(conn) == [HEAD]
    finally:
        conn.close()


def test_the_payload_key_index_is_gone(db: Path) -> None:
    """Migration 13: erasure finds a subject's payloads through the entries' subject index."""
    SqliteStore(db).close()
    conn = connect(db)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "ledger_payloads_key" not in names and "ledger_entries_subject" in names
        plan = " ".join(
            str(r[-1])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT p.seq FROM ledger_entries e JOIN ledger_payloads p "
                "ON p.seq = e.seq WHERE e.subject = ? ORDER BY p.seq",
                ("x",),
            )
        )
        assert "ledger_entries_subject" in plan and "SCAN" not in plan.replace("SCAN p", "")
    finally:
        conn.close()
