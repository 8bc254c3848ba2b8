"""Schema migrations on PostgreSQL, run by Alembic as the owner role: fresh schemas reach the
head, schemas the previous runner migrated are adopted, a failing migration leaves nothing
half done, and the application role migrates nothing."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.errors import StorageError
from chatledger.store import postgres_schema
from chatledger.store.migrations import head_version, revision_id
from chatledger.store.postgres import PostgresStore
from chatledger.store.postgres_schema import (
    MIGRATIONS,
    Migration,
    apply_migrations,
    grant_app_privileges,
    prepare_schema,
)
from tests.pg_server import PgServer
from tests.postgres.conftest import APP_PASSWORD, APP_ROLE, OWNER_ROLE, PgDatabase

pytestmark = pytest.mark.postgres

Conn = psycopg.Connection[Any]

_schemas = itertools.count(1)


def versions() -> list[int]:
    return [m.version for m in postgres_schema.MIGRATIONS]


def head() -> str:
    return revision_id(head_version(versions()))


def alembic_version(conn: Conn) -> list[str]:
    rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    conn.rollback()
    return [r[0] for r in rows]


def recorded(conn: Conn) -> list[int]:
    rows = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    conn.rollback()
    return [r[0] for r in rows]


def table_exists(conn: Conn, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    conn.rollback()
    return bool(row and row[0])


@dataclass(frozen=True)
class Bare:
    dbname: str
    schema: str
    url: str
    """The owner role's URL on the schema (a superuser acting as the owner)."""


@pytest.fixture
def bare(pg_server: PgServer, pg_dbname: str) -> Iterator[Bare]:
    """An empty schema that the owner role owns, with nothing migrated."""
    schema = f"mig{next(_schemas)}"
    with psycopg.connect(pg_server.url(pg_dbname), autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                sql.Identifier(schema), sql.Identifier(OWNER_ROLE)
            )
        )
    try:
        yield Bare(pg_dbname, schema, pg_server.url(pg_dbname, search_path=schema, role=OWNER_ROLE))
    finally:
        with psycopg.connect(pg_server.url(pg_dbname), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def old_runner(url: str, wanted: list[int]) -> None:
    """What the previous runner (before Alembic) left: ``schema_migrations`` with one row per
    applied version, no ``alembic_version``. A frozen copy of its loop."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at text NOT NULL)"
        )
        conn.commit()
        for migration in MIGRATIONS:
            if migration.version not in wanted:
                continue
            if callable(migration.sql):
                migration.sql(conn)
            else:
                conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations VALUES (%s, %s, '2024-05-01T00:00:00.000000Z')",
                (migration.version, migration.name),
            )
            conn.commit()


def test_a_fresh_schema_reaches_the_head(bare: Bare) -> None:
    with psycopg.connect(bare.url) as conn:
        assert apply_migrations(conn) == versions()
        assert alembic_version(conn) == [head()]
        assert recorded(conn) == versions()
        assert apply_migrations(conn) == []
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        owner = conn.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'alembic_version'::regclass"
        ).fetchone()
        assert owner == (OWNER_ROLE,)


def test_the_app_role_reads_the_version_and_changes_nothing(pg_database: PgDatabase) -> None:
    with psycopg.connect(pg_database.url) as conn:  # the application role
        assert alembic_version(conn) == [head()]
        assert recorded(conn) == versions()
        for statement in (
            "UPDATE alembic_version SET version_num = '0001'",
            "DELETE FROM alembic_version",
            "INSERT INTO schema_migrations VALUES (98, 'x', 'now')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()


def test_opening_a_current_store_asks_one_question(pg_database: PgDatabase) -> None:
    statements: list[str] = []
    with psycopg.connect(pg_database.url) as conn:
        original = conn.execute

        def counting(query: Any, *args: Any, **kwargs: Any) -> Any:
            statements.append(str(query))
            return original(query, *args, **kwargs)

        conn.execute = counting  # type: ignore[method-assign]
        assert apply_migrations(conn) == []
    assert len(statements) == 1, statements


def test_a_schema_of_the_previous_runner_is_adopted(bare: Bare) -> None:
    old_runner(bare.url, versions())
    with psycopg.connect(bare.url) as conn:
        assert not table_exists(conn, "alembic_version")
        before = conn.execute("SELECT * FROM schema_migrations ORDER BY 1").fetchall()
        assert apply_migrations(conn) == []
        assert alembic_version(conn) == [head()]
        assert conn.execute("SELECT * FROM schema_migrations ORDER BY 1").fetchall() == before


def test_an_older_schema_is_adopted_then_upgraded_with_its_data(bare: Bare) -> None:
    old_runner(bare.url, [1, 2, 3])
    with psycopg.connect(bare.url) as conn:
        conn.execute("INSERT INTO ledger_checkpoints VALUES (1, 'then', 'kept')")
        conn.commit()
        assert apply_migrations(conn) == [v for v in versions() if v > 3]
        assert alembic_version(conn) == [head()]
        assert recorded(conn) == versions()
        assert conn.execute("SELECT note FROM ledger_checkpoints").fetchall() == [("kept",)]


def test_a_failing_migration_leaves_the_previous_revision(
    bare: Bare, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = head_version(versions()) + 1
    good = Migration(later, "good", "CREATE TABLE good_things (id bigint PRIMARY KEY);")
    broken = Migration(
        later + 1,
        "broken",
        "CREATE TABLE half_done (id bigint PRIMARY KEY); INSERT INTO half_done VALUES (1); "
        "SELECT 1 / 0;",
    )
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", [*MIGRATIONS, good, broken])
    with psycopg.connect(bare.url) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            apply_migrations(conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        # the good one committed with its record; of the broken one, nothing at all
        assert alembic_version(conn) == [revision_id(later)]
        assert recorded(conn) == [*(m.version for m in MIGRATIONS), later]
        assert table_exists(conn, "good_things")
        assert not table_exists(conn, "half_done")
        with psycopg.connect(bare.url, autocommit=True) as other:  # the lock was released
            got = other.execute(
                "SELECT pg_try_advisory_lock(%s)", (postgres_schema.MIGRATION_LOCK,)
            ).fetchone()
            assert got == (True,)


def test_the_app_role_cannot_migrate(
    pg_server: PgServer, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = head()
    later = Migration(head_version(versions()) + 1, "later", "CREATE TABLE later (id text);")
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", [*MIGRATIONS, later])
    with psycopg.connect(pg_database.url) as conn:
        with pytest.raises(StorageError, match=r"\(later\) are pending and need the owner role"):
            apply_migrations(conn)
        assert alembic_version(conn) == [before]
        assert not table_exists(conn, "later")
    runner = CliRunner()
    refused = runner.invoke(app, ["db", "upgrade", "--database", pg_database.url])
    assert refused.exit_code != 0
    assert "need the owner role" in refused.stderr
    as_owner = pg_server.url(pg_database.name, search_path=pg_database.schema, role=OWNER_ROLE)
    done = runner.invoke(app, ["db", "upgrade", "--database", as_owner])
    assert done.exit_code == 0, done.stderr
    assert done.stdout.strip() == f"applied migrations: {later.version}"
    with psycopg.connect(pg_database.url) as conn:
        assert alembic_version(conn) == [revision_id(later.version)]


def test_the_app_keeps_running_on_an_unadopted_schema_until_the_owner_adopts_it(
    pg_server: PgServer, bare: Bare
) -> None:
    """Right after the upgrade to Alembic nothing is pending: the application role runs on a
    schema the previous runner migrated and creates nothing; the owner's next setup adopts
    it (alembic_version, owned by the owner, readable by the application)."""
    old_runner(bare.url, versions())
    with psycopg.connect(pg_server.url(bare.dbname)) as admin:  # as the previous setup did
        admin.execute(
            sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(
                sql.Identifier(bare.schema), sql.Identifier(APP_ROLE)
            )
        )
        grant_app_privileges(admin, APP_ROLE, owner_role=OWNER_ROLE, schema=bare.schema)
        admin.commit()
    app_url = pg_server.url(
        bare.dbname, user=APP_ROLE, password=APP_PASSWORD, search_path=bare.schema
    )
    PostgresStore(app_url).close()
    with psycopg.connect(bare.url) as conn:
        assert not table_exists(conn, "alembic_version")
    with psycopg.connect(pg_server.url(bare.dbname)) as admin:
        prepare_schema(admin, APP_ROLE, owner_role=OWNER_ROLE, schema=bare.schema)
    with psycopg.connect(app_url) as conn:
        assert alembic_version(conn) == [head()]
    PostgresStore(app_url).close()
