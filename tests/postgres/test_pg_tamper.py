"""The tamper catalogue (tests/ledger/test_tamper.py) on PostgreSQL.

Each mutation is made the way an attacker holding a superuser login would: directly in the
database, around the triggers (``session_replication_role = replica``, or ``ALTER TABLE ...
DISABLE TRIGGER``), and must be detected with the same first problem (reason and seq) as on
SQLite. The cases that do not edit the database are imported from the SQLite catalogue as
they are.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.ledger import merkle
from tests.conftest import LedgerFactory, sample_event
from tests.ledger.tamper import canonical
from tests.ledger.test_tamper import (
    SIZE,
    _flip_signature,
    assert_detected,
    test_checkpoint_signed_by_another_key,
    test_erasure_is_not_tampering,
    test_external_checkpoint_with_forged_signature,
    test_tampered_inclusion_proof,
    test_untouched_ledger_verifies,
    verify_again,
)
from tests.pg_server import PgServer
from tests.postgres.conftest import PgDatabase

pytestmark = pytest.mark.postgres

__all__ = [
    "test_checkpoint_signed_by_another_key",
    "test_erasure_is_not_tampering",
    "test_external_checkpoint_with_forged_signature",
    "test_tampered_inclusion_proof",
    "test_untouched_ledger_verifies",
]

Conn = psycopg.Connection[Any]


@pytest.fixture
def populated(make_ledger: LedgerFactory, data_dir: Path) -> Path:
    """A closed ledger of SIZE entries with a stored checkpoint. The SQLite catalogue's
    fixture returns the database file; here a path in the data directory stands in for it
    (the cases imported from there only look at its parent, where checkpoints are published).
    """
    ledger = make_ledger()
    ledger.append_many([sample_event(i, subject=f"subject-{i % 4}") for i in range(SIZE)])
    ledger.checkpoint()
    ledger.close()
    return data_dir / "postgres"


@pytest.fixture
def raw(pg_admin_url: str) -> Any:
    """Open the log's schema as a superuser with every trigger switched off."""

    @contextmanager
    def opened() -> Iterator[Conn]:
        with psycopg.connect(pg_admin_url) as conn:  # commits on a clean exit
            conn.execute("SET session_replication_role = replica")
            yield conn

    return opened


def body_of(conn: Conn, seq: int) -> dict[str, Any]:
    row = conn.execute("SELECT body FROM ledger_entries WHERE seq = %s", (seq,)).fetchone()
    assert row is not None
    value: dict[str, Any] = orjson.loads(row[0])
    return value


def leaf_of(conn: Conn, seq: int) -> bytes:
    row = conn.execute("SELECT leaf_hash FROM ledger_entries WHERE seq = %s", (seq,)).fetchone()
    assert row is not None
    return bytes(row[0])


def rewrite_body(conn: Conn, seq: int, body: bytes, *, update_hash: bool) -> None:
    if update_hash:
        conn.execute(
            "UPDATE ledger_entries SET body = %s, leaf_hash = %s WHERE seq = %s",
            (body, merkle.leaf_hash(body), seq),
        )
    else:
        conn.execute("UPDATE ledger_entries SET body = %s WHERE seq = %s", (body, seq))


def test_edited_payload(populated: Path, raw: Any, make_ledger: LedgerFactory) -> None:
    with raw() as conn:
        (ct,) = conn.execute("SELECT ciphertext FROM ledger_payloads WHERE seq = 5").fetchone()
        flipped = bytearray(ct)
        flipped[20] ^= 0xFF
        conn.execute("UPDATE ledger_payloads SET ciphertext = %s WHERE seq = 5", (bytes(flipped),))
    assert_detected(verify_again(make_ledger), "payload_tampered", 5)


def test_payload_moved_to_another_entry(
    populated: Path, raw: Any, make_ledger: LedgerFactory
) -> None:
    with raw() as conn:
        row = conn.execute(
            "SELECT key_ref, nonce, ciphertext FROM ledger_payloads WHERE seq = 4"
        ).fetchone()
        conn.execute(
            "UPDATE ledger_payloads SET key_ref = %s, nonce = %s, ciphertext = %s WHERE seq = 8",
            row,
        )
    assert_detected(verify_again(make_ledger), "payload_tampered", 8)


def test_edited_envelope_field(populated: Path, raw: Any, make_ledger: LedgerFactory) -> None:
    with raw() as conn:
        body = body_of(conn, 7)
        body["outcome"] = "failure"
        rewrite_body(conn, 7, canonical(body), update_hash=False)
    assert_detected(verify_again(make_ledger), "leaf_hash_mismatch", 7)


def test_edited_envelope_field_with_rehashed_leaf(
    populated: Path, raw: Any, make_ledger: LedgerFactory
) -> None:
    with raw() as conn:
        body = body_of(conn, 7)
        body["actor"] = {"type": "user", "id": "someone-else"}
        rewrite_body(conn, 7, canonical(body), update_hash=True)
        conn.execute("UPDATE ledger_entries SET actor_id = 'someone-else' WHERE seq = 7")
    report = verify_again(make_ledger)
    assert_detected(report, "entry_forged", 7)
    assert ("chain_broken", 7) in [(p.reason, p.seq) for p in report.problems]


@pytest.mark.parametrize(
    ("column", "value", "seq"),
    [("action", "message.feedback", 12), ("conversation_id", "c0", 13), ("chatbot_id", None, 14)],
)
def test_edited_search_column(
    populated: Path, raw: Any, make_ledger: LedgerFactory, column: str, value: Any, seq: int
) -> None:
    with raw() as conn:
        conn.execute(
            sql.SQL("UPDATE ledger_entries SET {} = %s WHERE seq = %s").format(
                sql.Identifier(column)
            ),
            (value, seq),
        )
    assert_detected(verify_again(make_ledger), "index_tampered", seq)


def test_deleted_entry(populated: Path, raw: Any, make_ledger: LedgerFactory) -> None:
    with raw() as conn:
        conn.execute("DELETE FROM ledger_entries WHERE seq = 10")
    assert_detected(verify_again(make_ledger), "entry_missing", 10)


def test_forged_entry_inserted(populated: Path, raw: Any, make_ledger: LedgerFactory) -> None:
    with raw() as conn:
        conn.execute("UPDATE ledger_entries SET seq = -seq - 1 WHERE seq >= 10")
        conn.execute("UPDATE ledger_entries SET seq = -seq WHERE seq < 0")  # now 11..SIZE
        forged = body_of(conn, 9)
        forged.update(seq=10, prev=leaf_of(conn, 9).hex(), action="message.feedback")
        forged.pop("payload", None)
        body = canonical(forged)
        conn.execute(
            "INSERT INTO ledger_entries VALUES (10, %s, 'message', 'message.feedback', %s, "
            "'message', 'm9', 'success', %s, 'bot-1', 'c4', %s, %s, %s)",
            (
                forged["ts"],
                "visitor-2",
                forged.get("subject"),
                body,
                merkle.leaf_hash(body),
                b"0" * 32,
            ),
        )
    report = verify_again(make_ledger)
    assert_detected(report, "entry_forged", 10)
    assert ("entry_inserted", 10) in [(p.reason, p.seq) for p in report.problems]


def test_forged_entry_appended_at_the_tail(
    populated: Path, raw: Any, make_ledger: LedgerFactory
) -> None:
    with raw() as conn:
        forged = body_of(conn, SIZE - 1)
        forged.update(seq=SIZE, prev=leaf_of(conn, SIZE - 1).hex(), id="forged")
        forged.pop("payload", None)
        body = canonical(forged)
        conn.execute(
            "INSERT INTO ledger_entries SELECT %s, ts, category, action, actor_id, entity_type, "
            "entity_id, outcome, subject, chatbot_id, conversation_id, %s, %s, mac "
            "FROM ledger_entries WHERE seq = %s",
            (SIZE, body, merkle.leaf_hash(body), SIZE - 1),
        )
    assert_detected(verify_again(make_ledger), "entry_forged", SIZE)


def test_two_entries_swapped(populated: Path, raw: Any, make_ledger: LedgerFactory) -> None:
    with raw() as conn:
        a = conn.execute("SELECT body, leaf_hash FROM ledger_entries WHERE seq = 12").fetchone()
        b = conn.execute("SELECT body, leaf_hash FROM ledger_entries WHERE seq = 13").fetchone()
        conn.execute("UPDATE ledger_entries SET body = %s, leaf_hash = %s WHERE seq = 12", b)
        conn.execute("UPDATE ledger_entries SET body = %s, leaf_hash = %s WHERE seq = 13", a)
    assert_detected(verify_again(make_ledger), "seq_mismatch", 12)


def test_tail_truncated(populated: Path, raw: Any, make_ledger: LedgerFactory) -> None:
    with raw() as conn:
        conn.execute("DELETE FROM ledger_entries WHERE seq >= %s", (SIZE - 5,))
    assert_detected(verify_again(make_ledger), "log_truncated", SIZE - 5)


def test_tail_truncated_with_its_checkpoints(
    populated: Path, pg_admin_url: str, make_ledger: LedgerFactory
) -> None:
    """This time the triggers are disabled table by table, as a table owner could."""
    published = (populated.parent / "published-checkpoints" / "checkpoint").read_text()
    with psycopg.connect(pg_admin_url) as conn:
        for table in ("ledger_entries", "ledger_nodes", "ledger_checkpoints"):
            conn.execute(
                sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table))
            )
        conn.execute("DELETE FROM ledger_entries WHERE seq >= %s", (SIZE - 5,))
        conn.execute("TRUNCATE ledger_nodes, ledger_checkpoints")
        for table in ("ledger_entries", "ledger_nodes", "ledger_checkpoints"):
            conn.execute(
                sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(table))
            )
    report = verify_again(make_ledger, external=published)
    assert_detected(report, "log_truncated", SIZE - 5)


def test_every_table_truncated(populated: Path, raw: Any, make_ledger: LedgerFactory) -> None:
    published = (populated.parent / "published-checkpoints" / "checkpoint").read_text()
    with raw() as conn:
        conn.execute(
            "TRUNCATE ledger_entries, ledger_nodes, ledger_checkpoints, ledger_payloads, "
            "ledger_payload_erasures, subject_keys"
        )
    assert verify_again(make_ledger).size == 0
    assert_detected(verify_again(make_ledger, external=published), "log_truncated", 0)


def test_database_replaced_by_an_older_backup(
    make_ledger: LedgerFactory,
    pg_server: PgServer,
    pg_database: PgDatabase,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    """pg_dump now, more appends, then the old dump restored over the schema: the restored
    log is internally consistent, and only the checkpoint published outside catches it."""
    ledger = make_ledger()
    ledger.append_many([sample_event(i) for i in range(20)])
    ledger.checkpoint()
    ledger.close()
    dump = tmp_path / "backup.dump"
    admin = pg_database.admin_url
    schema = pg_database.schema
    _tool(pg_server, "pg_dump", "--format=custom", f"--schema={schema}", f"--file={dump}", admin)
    ledger = make_ledger()
    ledger.append_many([sample_event(i) for i in range(20, 50)])
    ledger.checkpoint()  # published to the directory outside the database
    ledger.close()
    note = (data_dir / "published-checkpoints" / "checkpoint").read_text()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    _tool(pg_server, "pg_restore", "--exit-on-error", f"--dbname={admin}", str(dump))
    restored = verify_again(make_ledger)
    assert restored.ok and restored.size == 20  # the old copy is internally consistent ...
    report = verify_again(make_ledger, external=note)  # ... but not against the outside
    assert_detected(report, "log_truncated", 20)
    # The operator's check, as docs/operations.md gives it.
    held = tmp_path / "checkpoint"
    held.write_text(note)
    result = CliRunner().invoke(
        app,
        [
            "ledger",
            "verify",
            "--data-dir",
            str(data_dir),
            "--database",
            pg_database.url,
            "--checkpoint",
            str(held),
        ],
    )
    assert result.exit_code == 3, result.output
    assert "log_truncated" in result.output


def _tool(server: PgServer, name: str, *args: str) -> None:
    done = subprocess.run(
        [server.tool(name), *args], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, f"{name} failed: {done.stderr}"


def test_rewritten_history_against_checkpoint(
    populated: Path, raw: Any, make_ledger: LedgerFactory
) -> None:
    """Every entry re-hashed and re-linked consistently: only signatures and MACs catch it."""
    with raw() as conn:
        prev = "0" * 64
        for seq in range(SIZE):
            body = body_of(conn, seq)
            if seq == 3:
                body["outcome"] = "failure"
                conn.execute("UPDATE ledger_entries SET outcome = 'failure' WHERE seq = 3")
            body["prev"] = prev
            data = canonical(body)
            rewrite_body(conn, seq, data, update_hash=True)
            prev = merkle.leaf_hash(data).hex()
        conn.execute("DELETE FROM ledger_nodes")
    report = verify_again(make_ledger)
    assert_detected(report, "entry_forged", 3)
    assert any(p.reason == "checkpoint_root_mismatch" for p in report.problems)


def test_edited_tree_node(populated: Path, raw: Any, make_ledger: LedgerFactory) -> None:
    with raw() as conn:
        conn.execute("UPDATE ledger_nodes SET hash = %s WHERE level = 2 AND idx = 3", (bytes(32),))
    report = verify_again(make_ledger)
    assert_detected(report, "node_mismatch", None)
    assert report.problems[0].details["first_seq"] == 12


def test_payload_deleted_without_erasure(
    populated: Path, raw: Any, make_ledger: LedgerFactory
) -> None:
    with raw() as conn:
        conn.execute("DELETE FROM ledger_payloads WHERE seq = 21")
    assert_detected(verify_again(make_ledger), "payload_missing", 21)


def test_forged_erasure_record(populated: Path, raw: Any, make_ledger: LedgerFactory) -> None:
    with raw() as conn:
        conn.execute("INSERT INTO ledger_payload_erasures VALUES (21, 30, 'made up')")
        conn.execute("DELETE FROM ledger_payloads WHERE seq = 21")
    assert_detected(verify_again(make_ledger), "forged_erasure", 21)


def test_subject_key_destroyed_behind_the_ledgers_back(
    populated: Path, raw: Any, make_ledger: LedgerFactory
) -> None:
    with raw() as conn:
        (key_ref,) = conn.execute("SELECT key_ref FROM ledger_payloads WHERE seq = 2").fetchone()
        conn.execute("UPDATE subject_keys SET wrapped = NULL WHERE key_ref = %s", (key_ref,))
    assert_detected(verify_again(make_ledger), "payload_key_destroyed", 2)


def test_stored_checkpoint_with_forged_signature(
    populated: Path, raw: Any, make_ledger: LedgerFactory
) -> None:
    with raw() as conn:
        (note,) = conn.execute("SELECT note FROM ledger_checkpoints").fetchone()
        conn.execute("UPDATE ledger_checkpoints SET note = %s", (_flip_signature(note),))
    assert_detected(verify_again(make_ledger), "bad_signature", None)
