"""Migration 14: the ledger's entries and payloads range-partitioned by seq.

Every schema here is partitioned in partitions of :data:`SIZE` entries (the environment
variable the migration reads), so that a few dozen appends cross several boundaries and
reach the overflow partition. Covered: fresh schemas and schemas created before migration
14 end up partitioned (the old table, not rewritten, is the first partition); appends across
boundaries verify; the overflow partition takes appends past the last partition and the
maintenance job turns its rows into a partition; the application role has no privilege on
any partition and the append-only triggers refuse statements naming a partition; erasure
across partitions; detaching the oldest partition for archiving leaves the latest checkpoint,
consistency and inclusion proofs of the remaining entries verifiable, and attaching the
restored archive again makes the whole log verify; and the tamper catalogue of
test_pg_tamper.py, re-run on a log spread over several partitions.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.config import Settings
from chatledger.errors import InvalidInput, StorageError
from chatledger.events import Actor
from chatledger.ledger import merkle
from chatledger.ledger.note import open_checkpoint
from chatledger.ledger.service import Ledger, verify_proof_json
from chatledger.runtime import open_ledger
from chatledger.store import pg_partitions, postgres_schema
from chatledger.store.pg_partitions import (
    SIZE_ENV,
    attach_partition,
    catalogue,
    detach_partition,
    ensure_partitions,
)
from chatledger.store.postgres_schema import prepare_schema
from tests.conftest import LedgerFactory, sample_event
from tests.ledger.test_tamper import SIZE as TAMPER_SIZE
from tests.pg_server import PgServer
from tests.postgres.conftest import APP_PASSWORD, APP_ROLE, OWNER_ROLE, PgDatabase
from tests.postgres.test_pg_tamper import (
    raw,
    test_database_replaced_by_an_older_backup,
    test_deleted_entry,
    test_edited_envelope_field,
    test_edited_envelope_field_with_rehashed_leaf,
    test_edited_payload,
    test_edited_search_column,
    test_every_table_truncated,
    test_forged_entry_appended_at_the_tail,
    test_forged_entry_inserted,
    test_forged_erasure_record,
    test_payload_deleted_without_erasure,
    test_payload_moved_to_another_entry,
    test_rewritten_history_against_checkpoint,
    test_tail_truncated,
    test_tail_truncated_with_its_checkpoints,
    test_two_entries_swapped,
    test_untouched_ledger_verifies,
)

pytestmark = pytest.mark.postgres

__all__ = [  # the tamper catalogue, on partitioned tables
    "raw",
    "test_database_replaced_by_an_older_backup",
    "test_deleted_entry",
    "test_edited_envelope_field",
    "test_edited_envelope_field_with_rehashed_leaf",
    "test_edited_payload",
    "test_edited_search_column",
    "test_every_table_truncated",
    "test_forged_entry_appended_at_the_tail",
    "test_forged_entry_inserted",
    "test_forged_erasure_record",
    "test_payload_deleted_without_erasure",
    "test_payload_moved_to_another_entry",
    "test_rewritten_history_against_checkpoint",
    "test_tail_truncated",
    "test_tail_truncated_with_its_checkpoints",
    "test_two_entries_swapped",
    "test_untouched_ledger_verifies",
]

Conn = psycopg.Connection[Any]

SIZE = 8
"""Entries per partition in these tests."""

DPO = Actor("user", "dpo-1", "admin")


@pytest.fixture(autouse=True)
def small_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before any schema of the test is created (autouse fixtures come first)."""
    monkeypatch.setenv(SIZE_ENV, str(SIZE))


def owner_url(server: PgServer, db: PgDatabase) -> str:
    """The owner role's URL on the test's schema (a superuser acting as the owner)."""
    return server.url(db.name, search_path=db.schema, role=OWNER_ROLE)


@pytest.fixture
def owner(pg_server: PgServer, pg_database: PgDatabase) -> str:
    return owner_url(pg_server, pg_database)


def maintain(url: str, ahead: int = 2) -> pg_partitions.PartitionReport:
    with psycopg.connect(url) as conn:
        return ensure_partitions(conn, ahead)


def partitions_of(conn: Conn, parent: str) -> dict[str, str]:
    """{partition: bound} of ``parent`` in the connection's schema."""
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        (parent,),
    ).fetchall()
    conn.rollback()
    return {str(name): str(bound) for name, bound in rows}


def where_rows_are(conn: Conn, parent: str) -> dict[str, list[int]]:
    rows = conn.execute(
        sql.SQL(
            "SELECT tableoid::regclass::text, array_agg(seq ORDER BY seq) FROM {} GROUP BY 1"
        ).format(sql.Identifier(parent))
    ).fetchall()
    conn.rollback()
    return {str(name).rsplit(".", 1)[-1]: list(seqs) for name, seqs in rows}


def contiguous(seqs: list[int]) -> list[int]:
    return [seqs[0], seqs[-1]] if seqs else []


def assert_verifies(ledger: Ledger) -> None:
    report = ledger.verify()
    assert report.ok, report.to_json()
    assert report.size == ledger.size()


# -- the schema --------------------------------------------------------------------------------


def test_a_fresh_schema_is_partitioned(pg_database: PgDatabase) -> None:
    with psycopg.connect(pg_database.admin_url) as conn:
        for parent in pg_partitions.PARENTS:
            kind = conn.execute(
                "SELECT relkind FROM pg_class WHERE oid = %s::regclass", (parent,)
            ).fetchone()
            assert kind == ("p",)
            assert partitions_of(conn, parent) == {
                f"{parent}_p000000": "FOR VALUES FROM (MINVALUE) TO ('8')",
                f"{parent}_p000001": "FOR VALUES FROM ('8') TO ('16')",
                f"{parent}_p000002": "FOR VALUES FROM ('16') TO ('24')",
                f"{parent}_overflow": "FOR VALUES FROM ('24') TO (MAXVALUE)",
            }
        assert conn.execute("SELECT partition_size FROM ledger_partition_config").fetchall() == [
            (SIZE,)
        ]
        rows = conn.execute(
            "SELECT first_seq, end_seq, entries_table, payloads_table, state "
            "FROM ledger_partitions ORDER BY 1"
        ).fetchall()
        assert rows == [
            (
                n * SIZE,
                (n + 1) * SIZE,
                f"ledger_entries_p{n:06d}",
                f"ledger_payloads_p{n:06d}",
                "attached",
            )
            for n in range(3)
        ]
        # the parents' indexes, by name (migration 13 dropped ledger_payloads_key for good)
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexrelid::regclass::text FROM pg_index "
                "WHERE indrelid IN ('ledger_entries'::regclass, 'ledger_payloads'::regclass)"
            )
        }
        assert {
            "ledger_entries_pkey",
            "ledger_entries_entity",
            "ledger_entries_subject",
            "ledger_entries_conversation",
            "ledger_entries_chatbot",
            "ledger_payloads_pkey",
        } <= indexes
        assert "ledger_payloads_key" not in indexes


def test_a_schema_created_before_migration_14_is_converted_in_place(
    pg_server: PgServer,
    pg_dbname: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A log written under migrations 1-13, then upgraded the way an operator does (the owner
    migrates with setup-roles): the old table is the first partition, its file untouched,
    its indexes adopted by the parent, its grants moved to the parent."""
    schema = f"pre14_{next(_pre14)}"
    admin = pg_server.url(pg_dbname)
    app_url = pg_server.url(pg_dbname, user=APP_ROLE, password=APP_PASSWORD, search_path=schema)
    every = list(postgres_schema.MIGRATIONS)
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", [m for m in every if m.version != 14])
    with psycopg.connect(admin) as conn:
        prepare_schema(conn, APP_ROLE, owner_role=OWNER_ROLE, schema=schema)

    def opened() -> Ledger:
        return open_ledger(Settings.load(data_dir, database_url=app_url))

    ledger = opened()
    ledger.append_many([sample_event(i, subject=f"s{i % 3}") for i in range(21)])
    ledger.checkpoint()
    ledger.close()
    admin_on_schema = pg_server.url(pg_dbname, search_path=schema)
    with psycopg.connect(admin_on_schema) as conn:
        assert conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = 'ledger_entries'::regclass"
        ).fetchone() == ("r",)
        files = {
            parent: conn.execute("SELECT pg_relation_filenode(%s)", (parent,)).fetchone()
            for parent in pg_partitions.PARENTS
        }

    monkeypatch.setattr(postgres_schema, "MIGRATIONS", every)
    with psycopg.connect(admin) as conn:  # the operator's setup-roles after the upgrade
        prepare_schema(conn, APP_ROLE, owner_role=OWNER_ROLE, schema=schema)

    with psycopg.connect(admin_on_schema) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (14,)
        for parent in pg_partitions.PARENTS:
            first = f"{parent}_p000000"
            # 21 entries: the old table covers [0, 24), three partition sizes
            assert partitions_of(conn, parent)[first] == "FOR VALUES FROM (MINVALUE) TO ('24')"
            assert (
                conn.execute("SELECT pg_relation_filenode(%s)", (first,)).fetchone()
                == (files[parent])
            )
            # the old table's indexes serve as the parent's (attached, not rebuilt)
            adopted = conn.execute(
                "SELECT p.indexrelid::regclass::text, c.indexrelid::regclass::text "
                "FROM pg_index c JOIN pg_inherits i ON i.inhrelid = c.indexrelid "
                "JOIN pg_index p ON p.indexrelid = i.inhparent "
                "WHERE c.indrelid = %s::regclass ORDER BY 1",
                (first,),
            ).fetchall()
            assert (f"{parent}_pkey", f"{first}_pkey") in adopted
            if parent == "ledger_entries":
                assert ("ledger_entries_subject", f"{first}_subject") in adopted
            assert _privileges(conn, APP_ROLE, first) == set()
            assert _privileges(conn, APP_ROLE, parent) == {"SELECT", "INSERT"}
        assert where_rows_are(conn, "ledger_entries") == {"ledger_entries_p000000": list(range(21))}
        rows = conn.execute(
            "SELECT first_seq, end_seq, last_seq, checkpoint_size FROM ledger_partitions ORDER BY 1"
        ).fetchall()
        assert rows[0] == (0, 24, 20, None)  # not full: no checkpoint covers it yet
        assert [r[:2] for r in rows[1:]] == [(24, 32), (32, 40)]

    ledger = opened()
    assert_verifies(ledger)
    ledger.append_many([sample_event(i, subject=f"s{i % 3}") for i in range(21, 45)])
    ledger.erase_subject("s1", DPO, reason="art. 17")
    assert_verifies(ledger)
    ledger.close()


_pre14 = itertools.count(1)


def _privileges(conn: Conn, role: str, table: str) -> set[str]:
    granted = set()
    for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
        row = conn.execute(
            "SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)
        ).fetchone()
        if row == (True,):
            granted.add(privilege)
    conn.rollback()
    return granted


def test_migrating_refuses_a_view_that_would_see_only_the_first_partition(
    pg_server: PgServer, pg_dbname: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = f"pre14_{next(_pre14)}"
    every = list(postgres_schema.MIGRATIONS)
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", [m for m in every if m.version != 14])
    with psycopg.connect(pg_server.url(pg_dbname)) as conn:
        prepare_schema(conn, APP_ROLE, owner_role=OWNER_ROLE, schema=schema)
    as_owner = pg_server.url(pg_dbname, search_path=schema, role=OWNER_ROLE)
    with psycopg.connect(as_owner) as conn:
        conn.execute("CREATE VIEW recent AS SELECT seq, ts FROM ledger_entries")
        conn.commit()
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", every)
    with psycopg.connect(as_owner) as conn:
        with pytest.raises(StorageError, match="view recent depend"):
            postgres_schema.apply_migrations(conn)
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (13,)


# -- appending ---------------------------------------------------------------------------------


def test_appends_across_partition_boundaries_verify(
    make_ledger: LedgerFactory, pg_admin_url: str, owner: str
) -> None:
    ledger = make_ledger()
    for start in range(0, 60, 12):  # the maintenance job runs between bursts
        ledger.append_many([sample_event(i, subject=f"s{i % 5}") for i in range(start, start + 12)])
        report = maintain(owner)
        assert report.promoted == []  # it kept ahead: nothing reached the overflow partition
        ledger.checkpoint()
    maintain(owner)  # records the checkpoint covering the last full partition
    assert_verifies(ledger)
    with psycopg.connect(pg_admin_url) as conn:
        for parent in pg_partitions.PARENTS:
            placed = where_rows_are(conn, parent)
            assert f"{parent}_overflow" not in placed
            for name, seqs in placed.items():
                n = int(name.rsplit("_p", 1)[1])
                assert n * SIZE <= seqs[0] and seqs[-1] < (n + 1) * SIZE, name
        assert len(where_rows_are(conn, "ledger_entries")) == 60 // SIZE + 1
        settled = conn.execute(
            "SELECT first_seq, end_seq, last_seq, first_ts <= last_ts, checkpoint_size "
            "FROM ledger_partitions WHERE end_seq <= 60 ORDER BY 1"
        ).fetchall()
    checkpoints = [c.size for c in ledger.store.checkpoints()]
    assert len(settled) == 60 // SIZE
    for _first, end, last, ordered, checkpoint in settled:
        assert last == end - 1 and ordered
        assert checkpoint == min(size for size in checkpoints if size >= end)
    # every partition's range is one perfect subtree, whose hash is one row of ledger_nodes
    level = SIZE.bit_length() - 1
    for n in range(60 // SIZE):
        leaves = [bytes(row.leaf_hash) for row in ledger.store.entries(n * SIZE, (n + 1) * SIZE)]
        stored = ledger.store.fetch_nodes([(level, n)])[(level, n)]
        assert stored == merkle.root_from_leaves(leaves)


def test_the_overflow_partition_takes_appends_past_the_last_partition(
    make_ledger: LedgerFactory, pg_admin_url: str, owner: str
) -> None:
    """Inserts never fail for want of a partition: past the last one (the job was late) they
    land in the overflow partition, and the next run makes its rows a partition of their
    own, moving nothing."""
    ledger = make_ledger()
    ledger.append_many([sample_event(i, subject="carol") for i in range(37)])
    with psycopg.connect(pg_admin_url) as conn:
        assert contiguous(where_rows_are(conn, "ledger_entries")["ledger_entries_overflow"]) == [
            24,
            36,
        ]
        assert contiguous(where_rows_are(conn, "ledger_payloads")["ledger_payloads_overflow"]) == [
            24,
            36,
        ]
        before = conn.execute("SELECT pg_relation_filenode('ledger_entries_overflow')").fetchone()
    assert_verifies(ledger)

    report = maintain(owner)
    assert report.promoted == ["ledger_entries_p000003"]
    assert report.created == ["ledger_entries_p000005", "ledger_entries_p000006"]
    assert report.overflow_first_seq == 56
    with psycopg.connect(pg_admin_url) as conn:
        bounds = partitions_of(conn, "ledger_entries")
        assert bounds["ledger_entries_p000003"] == "FOR VALUES FROM ('24') TO ('40')"
        assert bounds["ledger_entries_overflow"] == "FOR VALUES FROM ('56') TO (MAXVALUE)"
        assert (
            conn.execute("SELECT pg_relation_filenode('ledger_entries_p000003')").fetchone()
            == before
        )
        placed = where_rows_are(conn, "ledger_entries")
        assert contiguous(placed["ledger_entries_p000003"]) == [24, 36]
        assert "ledger_entries_overflow" not in placed
        # the promoted tables are partitions like the others: protected, no app privilege
        for table in ("ledger_entries_p000003", "ledger_payloads_p000003"):
            assert _privileges(conn, APP_ROLE, table) == set()
    ledger.append_many([sample_event(i, subject="carol") for i in range(37, 70)])
    ledger.erase_subject("carol", DPO)
    assert_verifies(ledger)
    assert maintain(owner).promoted == ["ledger_entries_p000007"]  # [56, 72)


# -- protection ----------------------------------------------------------------------------------


def test_the_app_role_cannot_touch_a_partition_by_name(pg_url: str) -> None:
    """It reads and appends through the parents only; a partition is the owner's alone."""
    partitions = [
        f"{parent}_{suffix}"
        for parent in pg_partitions.PARENTS
        for suffix in ("p000000", "p000002", "overflow")
    ]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for partition, statement in itertools.product(
            partitions,
            (
                "SELECT count(*) FROM {}",
                "INSERT INTO {} SELECT * FROM {} WHERE false",
                "UPDATE {} SET seq = seq",
                "DELETE FROM {}",
                "TRUNCATE {}",
                "ALTER TABLE {} DISABLE TRIGGER USER",
                "DROP TABLE {}",
                "ALTER TABLE {} NO INHERIT ledger_entries",
            ),
        ):
            name = sql.Identifier(partition)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL(statement).format(name, name))
        for partition in partitions:
            parent = partition.rsplit("_", 1)[0]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(
                    sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                        sql.Identifier(parent), sql.Identifier(partition)
                    )
                )


def test_the_app_role_cannot_touch_a_payload_partition_or_the_catalogue(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in (
            "DELETE FROM ledger_payloads_p000000",
            "UPDATE ledger_payloads_p000001 SET key_ref = key_ref",
            "TRUNCATE ledger_payloads_overflow",
            "UPDATE ledger_partitions SET state = 'detached'",
            "DELETE FROM ledger_partition_config",
            "CREATE TABLE ledger_entries_p000099 PARTITION OF ledger_entries "
            "FOR VALUES FROM (800) TO (808)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM ledger_partitions").fetchone() == (3,)


def test_the_triggers_refuse_a_statement_naming_a_partition_for_every_role(
    ledger: Ledger, pg_admin_url: str
) -> None:
    """Statement-level triggers on the parents do not fire for a statement naming a
    partition: each partition carries its own."""
    ledger.append_many([sample_event(i, subject="dave") for i in range(30)])
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:  # a superuser
        for statement in (
            "UPDATE ledger_entries_p000001 SET ts = ts WHERE false",
            "DELETE FROM ledger_entries_p000000 WHERE seq = 3",
            "TRUNCATE ledger_entries_p000002",
            "DELETE FROM ledger_entries_overflow",
            "UPDATE ledger_payloads_p000000 SET key_ref = key_ref",
            "TRUNCATE ledger_payloads_p000001",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
        with pytest.raises(psycopg.errors.RaiseException, match="recorded erasure"):
            conn.execute("DELETE FROM ledger_payloads_p000001 WHERE seq = 9")
        assert conn.execute("SELECT count(*) FROM ledger_entries").fetchone() == (30,)
    assert_verifies(ledger)


def test_erasure_across_partitions(
    make_ledger: LedgerFactory, pg_admin_url: str, owner: str
) -> None:
    ledger = make_ledger()
    ledger.append_many([sample_event(i, subject="carol" if i % 3 else "dave") for i in range(20)])
    maintain(owner)
    ledger.append_many(
        [sample_event(i, subject="carol" if i % 3 else "dave") for i in range(20, 45)]
    )
    receipt = ledger.erase_subject("carol", DPO, reason="GDPR art. 17")
    carol = [i for i in range(45) if i % 3]
    with psycopg.connect(pg_admin_url) as conn:
        erased = conn.execute("SELECT seq FROM ledger_payload_erasures ORDER BY 1").fetchall()
        assert [r[0] for r in erased] == carol
        left = where_rows_are(conn, "ledger_payloads")
        assert sorted(s for seqs in left.values() for s in seqs) == [
            i for i in range(45) if i % 3 == 0
        ] + [receipt.seq]
        assert len(left) >= 5  # the erasure deleted from several partitions
    report = ledger.verify()
    assert report.ok and report.payloads_erased == len(carol), report.to_json()


# -- archiving ---------------------------------------------------------------------------------


def _tool(server: PgServer, name: str, *args: str) -> None:
    done = subprocess.run(
        [server.tool(name), *args], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, f"{name} failed: {done.stderr}"


def test_detaching_refuses_what_the_live_log_still_needs(
    make_ledger: LedgerFactory, owner: str
) -> None:
    ledger = make_ledger()
    ledger.append_many([sample_event(i) for i in range(6)])
    ledger.checkpoint()
    with psycopg.connect(owner) as conn:
        with pytest.raises(InvalidInput, match="not full"):
            detach_partition(conn, "ledger_entries_p000000")
        ledger.append_many([sample_event(i) for i in range(6, 20)])
        with pytest.raises(InvalidInput, match="no stored checkpoint covers"):
            detach_partition(conn, "ledger_entries_p000000")
        ledger.checkpoint()
        with pytest.raises(InvalidInput, match="oldest attached partition first"):
            detach_partition(conn, "ledger_entries_p000001")
        assert detach_partition(conn, "0").state == "detached"
        with pytest.raises(InvalidInput, match="already detached"):
            detach_partition(conn, "ledger_payloads_p000000")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_archiving_a_partition_keeps_the_live_log_provable(
    make_ledger: LedgerFactory,
    pg_server: PgServer,
    pg_database: PgDatabase,
    owner: str,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    """The documented procedure: detach the oldest partition, dump its two tables, drop them.
    The latest checkpoint, consistency proofs from the boundary checkpoint and inclusion
    proofs of every remaining entry still verify, and appends go on; a full verification
    needs the archive back, and restoring and attaching it makes the whole log verify."""
    ledger = make_ledger()
    ledger.append_many([sample_event(i, subject=f"s{i % 4}") for i in range(20)])
    ledger.checkpoint()  # covers partitions 0 and 1
    maintain(owner)
    ledger.append_many([sample_event(i, subject=f"s{i % 4}") for i in range(20, 30)])
    ledger.close()
    runner = CliRunner()
    cli = ["db", "partitions", "--database", owner]

    done = runner.invoke(app, [*cli, "--detach", "ledger_entries_p000000"])
    assert done.exit_code == 0, done.output
    assert "detached ledger_entries_p000000, ledger_payloads_p000000" in done.stdout
    schema = pg_database.schema
    tables = ("ledger_entries_p000000", "ledger_payloads_p000000")
    with psycopg.connect(pg_database.admin_url) as conn:
        assert set(partitions_of(conn, "ledger_entries")).isdisjoint(tables)
        # detached, they stay append-only and out of the application's reach
        for statement in (
            "DELETE FROM ledger_entries_p000000",
            "UPDATE ledger_payloads_p000000 SET key_ref = key_ref",
            "DELETE FROM ledger_payloads_p000000 WHERE seq = 1",
        ):
            with pytest.raises(psycopg.errors.RaiseException):
                conn.execute(statement)
            conn.rollback()
        for table in tables:
            assert _privileges(conn, APP_ROLE, table) == set()
    # setup-roles again (an upgrade) gives the app nothing on a detached partition either
    with psycopg.connect(pg_server.url(pg_database.name)) as conn:
        prepare_schema(conn, APP_ROLE, owner_role=OWNER_ROLE, schema=schema)
    with psycopg.connect(pg_database.admin_url) as conn:
        for table in tables:
            assert _privileges(conn, APP_ROLE, table) == set()

    archive = tmp_path / "p000000.dump"
    _tool(
        pg_server,
        "pg_dump",
        "--format=custom",
        *(f"--table={schema}.{t}" for t in tables),
        f"--file={archive}",
        pg_database.admin_url,
    )
    with psycopg.connect(owner) as conn:
        conn.execute("DROP TABLE ledger_entries_p000000, ledger_payloads_p000000")
        conn.commit()
        (part,) = [p for p in catalogue(conn) if p.first_seq == 0]
    assert (part.state, part.last_seq, part.checkpoint_size) == ("detached", 7, 20)

    ledger = make_ledger()
    size = ledger.size()
    assert size == 30
    checkpoint = ledger.checkpoint()  # the writer rebuilt its frontier from ledger_nodes
    latest = open_checkpoint(checkpoint.note, ledger.verifier, ledger.origin)
    assert latest.size == size and latest.root == ledger.root(size)
    boundary = next(c for c in ledger.store.checkpoints() if c.size == part.checkpoint_size)
    old = open_checkpoint(boundary.note, ledger.verifier, ledger.origin)
    merkle.verify_consistency(
        old.size, size, ledger.prove_consistency(old.size, size), old.root, latest.root
    )
    for seq in range(SIZE, size):
        proof = ledger.prove(seq)
        verify_proof_json(proof.to_json(), ledger.verifier, ledger.origin)
    ledger.append_many([sample_event(i, subject=f"s{i % 4}") for i in range(30, 41)])
    ledger.erase_subject("s2", DPO)  # its keys go; its archived payloads (2, 6) stay
    newer = ledger.checkpoint()
    assert newer.size == 42  # the erasure is an entry too
    assert open_checkpoint(newer.note, ledger.verifier, ledger.origin).root == ledger.root(42)
    verify_proof_json(ledger.prove(40).to_json(), ledger.verifier, ledger.origin)
    report = ledger.verify()  # the full check starts at seq 0, which is in the archive
    assert not report.ok and report.problems[0].reason == "entry_missing"
    assert ledger.first_live_seq() == part.end_seq == 8
    live = ledger.verify(start=ledger.first_live_seq())  # the rest, proved by checkpoints
    assert live.ok, live.to_json()
    assert (live.start, live.size, live.checkpoints_checked) == (8, 42, 3)
    ledger.close()
    verified = runner.invoke(
        app,
        ["ledger", "verify", "--live", "--json", "--database", owner, "--data-dir", str(data_dir)],
    )
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["from_seq"] == 8

    _tool(
        pg_server,
        "pg_restore",
        "--exit-on-error",
        f"--dbname={pg_database.admin_url}",
        str(archive),
    )
    done = runner.invoke(app, [*cli, "--attach", "ledger_payloads_p000000", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["attached"]["state"] == "attached"
    with psycopg.connect(pg_database.admin_url) as conn:
        assert partitions_of(conn, "ledger_payloads")["ledger_payloads_p000000"] == (
            "FOR VALUES FROM (MINVALUE) TO ('8')"
        )
        for table in tables:
            assert _privileges(conn, APP_ROLE, table) == set()
        with pytest.raises(psycopg.errors.RaiseException, match="recorded erasure"):
            conn.execute("DELETE FROM ledger_payloads_p000000 WHERE seq = 1")
    ledger = make_ledger()
    report = ledger.verify()  # s2's payloads came back with the archive, their key destroyed
    assert [(p.reason, p.seq) for p in report.problems] == [
        ("payload_key_destroyed", 2),
        ("payload_key_destroyed", 6),
    ]
    ledger.erase_subject("s2", DPO)  # the erasure again, as docs/operations.md says
    assert_verifies(ledger)
    ledger.erase_subject("s1", DPO)  # erasure reaches the re-attached partition
    assert_verifies(ledger)


def test_a_partition_detached_by_hand_is_marked_and_protected(
    make_ledger: LedgerFactory, pg_admin_url: str, owner: str
) -> None:
    """``DETACH PARTITION ... CONCURRENTLY`` (outside a transaction, by hand): the next run of
    the job marks the range detached and gives the payload table its delete trigger back."""
    ledger = make_ledger()
    ledger.append_many([sample_event(i, subject="erin") for i in range(12)])
    ledger.checkpoint()
    ledger.close()
    with psycopg.connect(owner, autocommit=True) as conn:
        for parent in pg_partitions.PARENTS:
            conn.execute(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
                    sql.Identifier(parent), sql.Identifier(f"{parent}_p000000")
                )
            )
    maintain(owner)
    with psycopg.connect(owner) as conn:
        assert [p.state for p in catalogue(conn)][:2] == ["detached", "attached"]
    with (
        psycopg.connect(pg_admin_url) as conn,
        pytest.raises(psycopg.errors.RaiseException, match="recorded erasure"),
    ):
        conn.execute("DELETE FROM ledger_payloads_p000000 WHERE seq = 1")


def test_attaching_refuses_rows_outside_the_range(
    make_ledger: LedgerFactory, pg_database: PgDatabase, owner: str
) -> None:
    ledger = make_ledger()
    ledger.append_many([sample_event(i) for i in range(12)])
    ledger.checkpoint()
    with psycopg.connect(owner) as conn:
        detach_partition(conn, "ledger_entries_p000000")
    with psycopg.connect(pg_database.admin_url) as conn:  # an archive that was tampered with
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE ledger_entries_p000000 SET seq = 100 WHERE seq = 7")
        conn.commit()
    with psycopg.connect(owner) as conn:
        with pytest.raises(StorageError, match=r"outside \[0, 8\)"):
            attach_partition(conn, "ledger_entries_p000000")
        assert catalogue(conn)[0].state == "detached"


# -- the command line ------------------------------------------------------------------------------


def test_the_maintenance_command(
    make_ledger: LedgerFactory, pg_database: PgDatabase, owner: str
) -> None:
    ledger = make_ledger()
    ledger.append_many([sample_event(i) for i in range(30)])
    ledger.checkpoint()
    ledger.close()
    runner = CliRunner()
    done = runner.invoke(app, ["db", "partitions", "--database", owner, "--ahead", "1"])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0] == "partition size 8, head 30, overflow partition from seq 40"
    assert lines[1] == "moved the overflow partition's rows into ledger_entries_p000003"
    assert lines[2] == "created partitions: ledger_entries_p000004"
    assert lines[3].startswith("ledger_entries_p000000  [0, 8)  attached  0..7  ")
    assert lines[3].endswith("checkpoint 30")
    assert lines[6].startswith("ledger_entries_p000003  [24, 32)  attached  24..29  ")
    assert lines[6].endswith("no checkpoint")
    assert len(lines) == 3 + 5
    again = runner.invoke(app, ["db", "partitions", "--database", owner, "--json"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["created"] == ["ledger_entries_p000005"]
    assert [p["full"] for p in report["partitions"]] == [True, True, True, False, False, False]
    upgrade = runner.invoke(app, ["db", "upgrade", "--database", owner])
    assert upgrade.exit_code == 0, upgrade.output
    assert upgrade.stdout.strip() == "applied migrations: none pending"
    refused = runner.invoke(app, ["db", "partitions", "--database", pg_database.url])
    assert refused.exit_code != 0
    assert "needs the owner role" in refused.stderr


# -- the tamper catalogue, on a log spread over partitions -------------------------------------


@pytest.fixture
def populated(make_ledger: LedgerFactory, data_dir: Path, owner: str) -> Path:
    """test_pg_tamper's log (the same events, so the same seqs), over several partitions
    and the overflow one: the maintenance job ran once, halfway."""
    ledger = make_ledger()
    half = TAMPER_SIZE // 2
    ledger.append_many([sample_event(i, subject=f"subject-{i % 4}") for i in range(half)])
    maintain(owner, ahead=1)
    ledger.append_many(
        [sample_event(i, subject=f"subject-{i % 4}") for i in range(half, TAMPER_SIZE)]
    )
    ledger.checkpoint()
    ledger.close()
    with psycopg.connect(owner) as conn:
        spread = where_rows_are(conn, "ledger_entries")
    assert len(spread) >= 4 and "ledger_entries_overflow" in spread, spread
    return data_dir / "postgres"
