"""Roles: the application role holds no UPDATE, DELETE or TRUNCATE on any ledger table, and
the erasure it needs still works, through the owner's two SECURITY DEFINER functions."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from chatledger.errors import StorageError
from chatledger.events import Actor
from chatledger.ledger.service import Ledger
from chatledger.store import postgres_schema
from chatledger.store.postgres import PostgresStore
from chatledger.store.postgres_schema import (
    APP_INSERTS,
    ERASURE_FUNCTIONS,
    LEDGER_TABLES,
    MIGRATIONS,
    Migration,
    main,
    setup_roles,
)
from tests.conftest import sample_event
from tests.ledger.test_erasure import (
    test_erasure_refused_under_legal_hold,
    test_new_content_after_erasure_gets_a_new_key,
)
from tests.pg_server import PgServer
from tests.postgres.conftest import APP_PASSWORD, APP_ROLE, OWNER_ROLE, PgDatabase

pytestmark = pytest.mark.postgres

__all__ = [
    "test_erasure_refused_under_legal_hold",
    "test_new_content_after_erasure_gets_a_new_key",
]

DPO = Actor("user", "dpo-1", "admin")


def test_the_app_role_has_only_select_and_insert(pg_database: PgDatabase) -> None:
    with psycopg.connect(pg_database.admin_url) as conn:
        for table in LEDGER_TABLES:
            qualified = f"{pg_database.schema}.{table}"
            granted = {
                privilege
                for privilege in (
                    "SELECT",
                    "INSERT",
                    "UPDATE",
                    "DELETE",
                    "TRUNCATE",
                    "REFERENCES",
                    "TRIGGER",
                )
                if conn.execute(
                    "SELECT has_table_privilege(%s, %s, %s)", (APP_ROLE, qualified, privilege)
                ).fetchone()
                == (True,)
            }
            expected = {"SELECT", "INSERT"} if table in APP_INSERTS else {"SELECT"}
            assert granted == expected, table
            owner = conn.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
                (qualified,),
            ).fetchone()
            assert owner == (OWNER_ROLE,)
        for function in ERASURE_FUNCTIONS:
            row = conn.execute(
                "SELECT has_function_privilege(%s, %s, 'EXECUTE'), "
                "has_function_privilege('public', %s, 'EXECUTE')",
                (APP_ROLE, f"{pg_database.schema}.{function}", f"{pg_database.schema}.{function}"),
            ).fetchone()
            assert row == (True, False), function


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE ledger_entries DISABLE TRIGGER USER",
        "DROP TRIGGER ledger_entries_append_only ON ledger_entries",
        "DROP TABLE ledger_nodes",
        "ALTER TABLE ledger_entries ADD COLUMN x int",
        "INSERT INTO ledger_payload_erasures VALUES (0, 1, 'made up')",
        "CREATE TRIGGER t BEFORE INSERT ON ledger_entries "
        "FOR EACH ROW EXECUTE FUNCTION ledger_refuse()",
        "SET session_replication_role = replica",
    ],
)
def test_the_app_role_cannot_get_around_the_triggers(pg_url: str, statement: str) -> None:
    with (
        psycopg.connect(pg_url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


def test_the_app_role_cannot_grant_itself_more(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("GRANT UPDATE, DELETE ON ledger_entries TO PUBLIC")  # a warning, no grant
        row = conn.execute(
            "SELECT has_table_privilege('ledger_entries', 'UPDATE'), "
            "has_table_privilege('ledger_entries', 'DELETE')"
        ).fetchone()
        assert row == (False, False)


def test_erasure_as_the_app_role(ledger: Ledger, pg_admin_url: str) -> None:
    ledger.append_many([sample_event(i, subject="carol" if i % 2 else "dave") for i in range(10)])
    receipt = ledger.erase_subject("carol", DPO, reason="GDPR art. 17")
    ref = ledger.subject_ref("carol")
    with psycopg.connect(pg_admin_url) as conn:
        payloads = conn.execute("SELECT seq FROM ledger_payloads ORDER BY seq").fetchall()
        erased = conn.execute("SELECT seq, erasure_seq FROM ledger_payload_erasures ORDER BY seq")
        keys = conn.execute(
            "SELECT wrapped, erasure_seq FROM subject_keys WHERE subject_ref = %s", (ref,)
        ).fetchall()
        assert [p[0] for p in payloads] == [0, 2, 4, 6, 8, receipt.seq]
        assert erased.fetchall() == [(s, receipt.seq) for s in (1, 3, 5, 7, 9)]
        assert keys == [(None, receipt.seq)]
    report = ledger.verify()
    assert report.ok and report.payloads_erased == 5, report.to_json()


def test_setup_roles_is_idempotent_and_guards_the_app_role(
    pg_server: PgServer, pg_database: PgDatabase
) -> None:
    admin = pg_server.url(pg_database.name)
    setup_roles(admin, APP_ROLE, APP_PASSWORD, owner_role=OWNER_ROLE, schema=pg_database.schema)
    with pytest.raises(StorageError, match="superuser"):
        setup_roles(admin, "postgres", "x", owner_role=OWNER_ROLE, schema=pg_database.schema)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(OWNER_ROLE), sql.Identifier(APP_ROLE))
        )
        try:
            with pytest.raises(StorageError, match="member of the owner role"):
                setup_roles(admin, APP_ROLE, APP_PASSWORD, owner_role=OWNER_ROLE)
        finally:
            conn.execute(
                sql.SQL("REVOKE {} FROM {}").format(
                    sql.Identifier(OWNER_ROLE), sql.Identifier(APP_ROLE)
                )
            )


def test_the_command_line_sets_up_a_new_schema(
    pg_server: PgServer, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHATLEDGER_APP_PASSWORD", APP_PASSWORD)
    admin = pg_server.url(pg_database.name)
    schema = f"{pg_database.schema}_cli"
    argv = [
        "setup-roles",
        "--admin-url",
        admin,
        "--app-role",
        APP_ROLE,
        "--owner-role",
        OWNER_ROLE,
        "--schema",
        schema,
    ]
    assert main(argv) == 0
    assert main(["migrate", "--url", pg_server.url(pg_database.name, search_path=schema)]) == 0
    app_url = pg_server.url(
        pg_database.name, user=APP_ROLE, password=APP_PASSWORD, search_path=schema
    )
    with psycopg.connect(app_url) as conn:
        assert conn.execute("SELECT count(*) FROM ledger_entries").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM ledger_entries")
    assert main(["migrate", "--url", "postgresql://nobody@127.0.0.1:1/x"]) == 1


def test_the_app_role_may_change_the_platforms_own_tables(pg_url: str) -> None:
    """Projections (chatbots, documents, ...) are not the record: the app updates them."""
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO workspaces (id, name, created_at) VALUES ('w1', 'one', 'now')")
        conn.execute("UPDATE workspaces SET name = 'uno' WHERE id = 'w1'")
        conn.execute("DELETE FROM workspaces WHERE id = 'w1'")


def test_only_the_owner_applies_new_migrations(
    pg_server: PgServer, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an upgrade the application role must not create (and so own) the new tables:
    it stops and names the command; the owner migrates (here through the URL's role option,
    as docs/operations.md shows), then the application starts."""
    later = Migration(99, "later", "CREATE TABLE later_things (id text PRIMARY KEY)")
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", [*MIGRATIONS, later])
    with pytest.raises(StorageError, match=r"99 \(later\) are pending and need the owner"):
        PostgresStore(pg_database.url)
    as_owner = pg_server.url(pg_database.name, search_path=pg_database.schema, role=OWNER_ROLE)
    assert main(["migrate", "--url", as_owner]) == 0
    store = PostgresStore(pg_database.url)
    try:
        assert store.query("SELECT max(version) FROM schema_migrations") == [(99,)]
        owner = store.query(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'later_things'::regclass"
        )
        assert owner == [(OWNER_ROLE,)]
    finally:
        store.close()
