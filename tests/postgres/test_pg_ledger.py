"""The ledger's behaviour tests (tests/ledger/test_ledger.py) run against PostgreSQL.

The backend-neutral tests are imported as they are: pytest collects them here, and their
``ledger``/``make_ledger`` fixtures resolve to the PostgreSQL ones of this folder's
conftest (the application role on a fresh database). The three that look into the SQLite
file have PostgreSQL counterparts below.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from chatledger.config import Settings
from chatledger.errors import InvalidInput, StorageError
from chatledger.ledger.service import Ledger
from chatledger.runtime import open_store
from chatledger.store.postgres import PostgresStore, lock_key, qmark_to_format
from chatledger.store.postgres_schema import LEDGER_TABLES, MIGRATIONS
from tests.conftest import LedgerFactory, sample_event
from tests.ledger.test_ledger import (
    test_append_returns_consecutive_seqs_and_reads_back,
    test_checkpoints_are_published_outside_the_database,
    test_checkpoints_every_n_entries_and_on_demand,
    test_checkpoints_on_a_timer,
    test_inclusion_and_consistency_proofs,
    test_invalid_events_are_refused_and_nothing_is_written,
    test_payload_size_limit,
    test_reopening_continues_the_same_log,
    test_secrets_are_redacted_before_writing,
    test_timestamps_never_go_backwards,
    test_transaction_failure_writes_neither_change_nor_event,
    test_verification_of_a_healthy_ledger,
)
from tests.pg_server import PgServer

pytestmark = pytest.mark.postgres

__all__ = [
    "test_append_returns_consecutive_seqs_and_reads_back",
    "test_checkpoints_are_published_outside_the_database",
    "test_checkpoints_every_n_entries_and_on_demand",
    "test_checkpoints_on_a_timer",
    "test_inclusion_and_consistency_proofs",
    "test_invalid_events_are_refused_and_nothing_is_written",
    "test_payload_size_limit",
    "test_reopening_continues_the_same_log",
    "test_secrets_are_redacted_before_writing",
    "test_timestamps_never_go_backwards",
    "test_transaction_failure_writes_neither_change_nor_event",
    "test_verification_of_a_healthy_ledger",
]


def test_the_ledger_runs_on_postgres(ledger: Ledger) -> None:
    assert isinstance(ledger.store, PostgresStore)
    assert ledger.store.dialect == "postgresql"


def test_entries_hold_no_personal_content(ledger: Ledger, pg_admin_url: str) -> None:
    ledger.append(sample_event(1, subject="bob@example.com"))
    body = ledger.entry(0).body.decode()
    assert "bob@example.com" not in body
    assert "message number 1" not in body
    with psycopg.connect(pg_admin_url) as conn:
        for table in LEDGER_TABLES:
            dump = conn.execute(f"SELECT coalesce(string_agg(t::text, ''), '') FROM {table} t")
            text = str(dump.fetchone())
            assert "message number 1" not in text, table  # payloads are encrypted at rest
            assert "bob@example.com" not in text, table
            assert "6d657373616765206e756d6265722031" not in text, table  # nor as bytea hex


REFUSED = [
    "UPDATE ledger_entries SET action = 'x' WHERE seq = 1",
    "UPDATE ledger_entries SET action = 'x' WHERE false",
    "DELETE FROM ledger_entries WHERE seq = 2",
    "TRUNCATE ledger_entries CASCADE",
    "UPDATE ledger_nodes SET hash = '\\x00'",
    "DELETE FROM ledger_nodes",
    "TRUNCATE ledger_nodes",
    "DELETE FROM ledger_checkpoints",
    "UPDATE ledger_checkpoints SET note = ''",
    "TRUNCATE ledger_checkpoints",
    "UPDATE ledger_payloads SET ciphertext = '\\x00'",
    "DELETE FROM ledger_payloads WHERE seq = 0",
    "TRUNCATE ledger_payloads",
    "DELETE FROM ledger_payload_erasures",
    "TRUNCATE ledger_payload_erasures",
    "DELETE FROM subject_keys",
    "TRUNCATE subject_keys",
    "UPDATE subject_keys SET wrapped = '\\x00'",
    "UPDATE subject_keys SET created_at = 'x'",
]


def test_database_refuses_update_and_delete(ledger: Ledger, pg_admin_url: str, pg_url: str) -> None:
    """The triggers refuse even a superuser; the application role has no such privilege."""
    ledger.append_many([sample_event(i, subject="s") for i in range(3)])
    ledger.checkpoint()
    with (
        psycopg.connect(pg_admin_url, autocommit=True) as admin,
        psycopg.connect(pg_url, autocommit=True) as app,
    ):
        for statement in REFUSED:
            with pytest.raises(psycopg.errors.RaiseException, match=r"append-only|erasure|destroy"):
                admin.execute(statement)
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                app.execute(statement)
    assert ledger.verify().ok


def test_a_subject_key_is_destroyed_once_even_by_a_superuser(
    ledger: Ledger, pg_admin_url: str
) -> None:
    ledger.append(sample_event(1, subject="carol"))
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        destroy = (
            "UPDATE subject_keys SET wrapped = NULL, erased_at = 'now', erasure_seq = 7 "
            "WHERE subject_ref <> 'system'"
        )
        conn.execute(destroy)  # the one change allowed ...
        with pytest.raises(psycopg.errors.RaiseException, match="only be destroyed, once"):
            conn.execute(destroy)  # ... once


def test_qmark_placeholders_are_translated_outside_quotes() -> None:
    assert qmark_to_format("SELECT a FROM t WHERE b = ? AND c = ?") == (
        "SELECT a FROM t WHERE b = %s AND c = %s"
    )
    assert qmark_to_format("SELECT '?', \"a?b\", x FROM t WHERE y LIKE 'a%' AND z = ?") == (
        "SELECT '?', \"a?b\", x FROM t WHERE y LIKE 'a%%' AND z = %s"
    )
    assert qmark_to_format("SELECT 'it''s ?' -- why?\n, ? /* ? */") == (
        "SELECT 'it''s ?' -- why?\n, %s /* ? */"
    )
    assert qmark_to_format("SELECT $$ ? $$, $f$ ? $f$, ?, 5 % 2") == (
        "SELECT $$ ? $$, $f$ ? $f$, %s, 5 %% 2"
    )


def test_platform_sql_with_question_marks_runs_in_both_paths(ledger: Ledger) -> None:
    def change(ctx: Any) -> tuple[None, list[Any]]:
        ctx.txn.execute("CREATE TABLE IF NOT EXISTS notes (id text PRIMARY KEY, body text)")
        ctx.txn.execute("INSERT INTO notes VALUES (?, ?)", ("n1", "50% off? yes"))
        ctx.txn.execute("INSERT INTO notes VALUES ('n2', 'literal ? and %')")
        assert ctx.txn.execute("SELECT body FROM notes WHERE id = ?", ("n1",)) == [
            ("50% off? yes",)
        ]
        return None, [sample_event(1)]

    ledger.transact(change)
    assert ledger.store.query("SELECT id FROM notes WHERE body LIKE ? ORDER BY id", ("%?%",)) == [
        ("n1",),
        ("n2",),
    ]
    assert ledger.store.query("SELECT count(*) FROM notes") == [(2,)]


def test_readers_are_read_only(ledger: Ledger) -> None:
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        ledger.store.query("CREATE TABLE nope (id int)")
    conn = ledger.store.read_connection()
    assert conn is ledger.store.read_connection()  # one per thread
    assert conn.execute("SELECT count(*) FROM ledger_entries").fetchone() == (0,)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("CREATE TABLE nope (id int)")


def test_a_failed_statement_sinks_only_its_own_unit_of_work(ledger: Ledger) -> None:
    def setup(ctx: Any) -> tuple[None, list[Any]]:
        ctx.txn.execute("CREATE TABLE uniq (id text PRIMARY KEY)")
        ctx.txn.execute("INSERT INTO uniq VALUES (?)", ("a",))
        return None, [sample_event(0)]

    def duplicate(ctx: Any) -> tuple[None, list[Any]]:
        ctx.txn.execute("INSERT INTO uniq VALUES (?)", ("b",))
        ctx.txn.execute("INSERT INTO uniq VALUES (?)", ("a",))  # fails: the database refuses
        return None, [sample_event(1)]

    def fine(ctx: Any) -> tuple[str, list[Any]]:
        ctx.txn.execute("INSERT INTO uniq VALUES (?)", ("c",))
        return "ok", [sample_event(2)]

    ledger.transact(setup)
    with ThreadPoolExecutor(2) as pool:  # often one group commit, sometimes two
        failing, passing = (
            pool.submit(ledger.transact, duplicate),
            pool.submit(ledger.transact, fine),
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            failing.result()
        result, receipts = passing.result()
    assert result == "ok" and [r.seq for r in receipts] == [1]
    assert ledger.store.query("SELECT id FROM uniq ORDER BY id") == [("a",), ("c",)]
    assert ledger.verify().ok


def test_open_store_accepts_both_url_schemes(tmp_path: Any, pg_url: str) -> None:
    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        store = open_store(Settings.load(tmp_path, database_url=url))
        assert isinstance(store, PostgresStore)
        assert store.size() == 0
        store.close()
    with pytest.raises(InvalidInput):
        open_store(Settings.load(tmp_path, database_url="mysql://x"))


def test_unreachable_server_is_a_clear_error(tmp_path: Any) -> None:
    url = "postgresql://nobody:secret-pw@127.0.0.1:1/none?connect_timeout=2"
    with pytest.raises(StorageError, match="cannot connect") as err:
        PostgresStore(url)
    assert "secret-pw" not in str(err.value)


def test_a_fresh_database_is_migrated_once_by_concurrent_starters(pg_server: PgServer) -> None:
    import threading

    name = pg_server.create_database("fresh")
    try:
        stores: list[PostgresStore] = []
        errors: list[BaseException] = []

        def start() -> None:
            try:
                stores.append(PostgresStore(pg_server.url(name)))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            assert not errors
            rows = stores[0].query("SELECT version, name FROM schema_migrations ORDER BY 1")
            assert rows == [(m.version, m.name) for m in MIGRATIONS]
            assert stores[0].lock_key == lock_key("public")
        finally:
            for store in stores:
                store.close()
    finally:
        pg_server.drop_database(name)


def test_the_app_role_cannot_create_the_schema(pg_server: PgServer, pg_dbname: str) -> None:
    """On a database nobody set up, the application role gets a clear error, not a half
    schema: PostgreSQL 15 gives no role but the owner CREATE on the public schema."""
    from tests.postgres.conftest import APP_PASSWORD, APP_ROLE

    name = pg_server.create_database("bare")
    try:
        with pytest.raises(StorageError, match="needs the owner role"):
            PostgresStore(pg_server.url(name, user=APP_ROLE, password=APP_PASSWORD))
    finally:
        pg_server.drop_database(name)


def test_two_stores_take_turns_and_keep_one_log(make_ledger: LedgerFactory) -> None:
    """Two writers (as two processes would have) interleave: each re-reads the head and
    rebuilds its tree frontier under the advisory lock."""
    first, second = make_ledger(), make_ledger()
    for i in range(30):
        (first if i % 3 else second).append_many([sample_event(i), sample_event(i + 100)])
    assert first.size() == second.size() == 60
    report = second.verify()
    assert report.ok, report.to_json()
    assert first.root() == second.root()


def test_the_writer_reconnects_when_the_server_drops_it(ledger: Ledger, pg_admin_url: str) -> None:
    ledger.append(sample_event(0))
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'chatledger-writer' AND datname = current_database()"
        ).fetchone()
    assert killed == (1,)
    assert ledger.append(sample_event(1)).seq == 1  # nothing was lost, nothing doubled
    assert ledger.verify().ok
