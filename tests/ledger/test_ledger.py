"""The ledger's Python API: append, read, prove, checkpoint, verify, fail closed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chatledger.errors import InvalidInput, NotFound, PayloadTooLarge
from chatledger.events import Actor, Entity, Event
from chatledger.ledger import merkle
from chatledger.ledger.note import open_checkpoint
from chatledger.ledger.service import Ledger, verify_proof_json
from chatledger.ledger.writer import WorkContext
from tests.conftest import LedgerFactory, sample_event, stored_bytes
from tests.ledger import reference_tree as ref


def test_append_returns_consecutive_seqs_and_reads_back(ledger: Ledger) -> None:
    receipts = ledger.append_many([sample_event(i, subject="alice") for i in range(5)])
    assert [r.seq for r in receipts] == [0, 1, 2, 3, 4]
    record = ledger.read(3)
    assert record.payload == {"text": "message number 3"}
    assert record.entry.action == "message.user"
    assert record.entry.category == "message"
    assert record.entry.attributes["n"] == 3
    assert record.entry.ts.endswith("Z") and len(record.entry.ts) == 27  # microseconds
    assert record.entry.subject is not None and "alice" not in record.entry.body.decode()
    assert ledger.read(0).entry.prev == "0" * 64
    assert ledger.read(1).entry.prev == receipts[0].leaf_hash


def test_entries_hold_no_personal_content(ledger: Ledger) -> None:
    ledger.append(sample_event(1, subject="bob@example.com"))
    body = ledger.entry(0).body.decode()
    assert "bob@example.com" not in body
    assert "message number 1" not in body
    raw = stored_bytes(ledger)
    assert b"message number 1" not in raw  # payloads are encrypted at rest


def test_timestamps_never_go_backwards(ledger: Ledger) -> None:
    ledger.append_many([sample_event(i) for i in range(50)])
    stamps = [e.ts for e in ledger.entries(0, 50)]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {
                "action": "no.such_action",
                "actor": {"type": "user", "id": "u"},
                "entity": {"type": "t", "id": "1"},
            },
            "unknown action",
        ),
        (
            {
                "action": "custom.ok",
                "actor": {"type": "robot", "id": "u"},
                "entity": {"type": "t", "id": "1"},
            },
            "actor.type",
        ),
        (
            {"action": "custom.ok", "actor": {"type": "user"}, "entity": {"type": "t", "id": "1"}},
            "actor.id",
        ),
        (
            {
                "action": "custom.ok",
                "actor": {"type": "user", "id": 5},
                "entity": {"type": "t", "id": "1"},
            },
            "actor.id",
        ),
        ({"action": "custom.ok", "actor": {"type": "user", "id": "u"}}, "missing 'entity'"),
        (
            {
                "action": "custom.ok",
                "actor": {"type": "user", "id": "u"},
                "entity": {"type": "t", "id": "1"},
                "payload": [1, 2],
            },
            "payload must be an object",
        ),
        (
            {
                "action": "custom.ok",
                "actor": {"type": "user", "id": "u"},
                "entity": {"type": "t", "id": "1"},
                "outcome": "maybe",
            },
            "outcome",
        ),
        (
            {
                "action": "custom.ok",
                "actor": {"type": "user", "id": "u"},
                "entity": {"type": "t", "id": "1"},
                "extra": 1,
            },
            "unknown event field",
        ),
        (
            {
                "action": "custom.ok",
                "actor": {"type": "user", "id": "u"},
                "entity": {"type": "t", "id": "1"},
                "payload": {"x": float("nan")},
            },
            "canonical",
        ),
        (
            {
                "action": "custom.ok",
                "actor": {"type": "user", "id": "u"},
                "entity": {"type": "t", "id": "1"},
                "payload": {"x": "\ud800"},
            },
            "JSON",
        ),
    ],
)
def test_invalid_events_are_refused_and_nothing_is_written(
    ledger: Ledger, event: dict[str, object], message: str
) -> None:
    ledger.append(sample_event(0))
    with pytest.raises(InvalidInput, match=message):
        ledger.append_many([sample_event(1), Event.from_json(event)])
    assert ledger.size() == 1


def test_payload_size_limit(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger(max_payload_bytes=1024)
    with pytest.raises(PayloadTooLarge):
        ledger.append(sample_event(1, size=2000))
    assert ledger.size() == 0


def test_secrets_are_redacted_before_writing(ledger: Ledger) -> None:
    event = Event(
        "settings.update",
        Actor("user", "admin-1", "admin"),
        Entity("chatbot", "b1"),
        attributes={"api_key": "sk-live-abcdefghijklmnop1234", "field": "model"},
        payload={
            "before": {"provider_api_key": "sk-abcdefghijklmnopqrstuvwx"},
            "after": {"password": "hunter2hunter2"},
            "note": "used header Authorization: Bearer "
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_abcdefgh",
        },
    )
    ledger.append(event)
    record = ledger.read(0)
    text = record.entry.body.decode() + str(record.payload)
    for secret in ("sk-live", "sk-abcdef", "hunter2", "eyJhbGci"):
        assert secret not in text
    assert record.entry.attributes["api_key"] == "[REDACTED]"
    assert record.entry.attributes["field"] == "model"


def test_transaction_failure_writes_neither_change_nor_event(ledger: Ledger) -> None:
    def create_table(ctx: WorkContext) -> tuple[None, list[Event]]:
        ctx.txn.execute("CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY)")
        return None, []

    ledger.transact(create_table)

    def failing(ctx: WorkContext) -> tuple[None, list[Event]]:
        ctx.txn.execute("INSERT INTO things VALUES ('a')")
        raise RuntimeError("the change failed half-way")

    with pytest.raises(RuntimeError):
        ledger.transact(failing)

    def ok(ctx: WorkContext) -> tuple[str, list[Event]]:
        ctx.txn.execute("INSERT INTO things VALUES ('b')")
        return "done", [sample_event(9)]

    result, receipts = ledger.transact(ok)
    assert result == "done" and receipts[0].seq == 0
    assert ledger.store.query("SELECT id FROM things") == [("b",)]

    def bad_event(ctx: WorkContext) -> tuple[None, list[Event]]:
        ctx.txn.execute("INSERT INTO things VALUES ('c')")
        return None, [sample_event(1, size=10**6)]  # over the payload limit

    with pytest.raises(PayloadTooLarge):
        ledger.transact(bad_event)
    assert ledger.store.query("SELECT id FROM things") == [("b",)]  # fail closed
    assert ledger.size() == 1


def test_inclusion_and_consistency_proofs(ledger: Ledger) -> None:
    ledger.append_many([sample_event(i) for i in range(37)])
    leaves = [ref.leaf(e.body) for e in ledger.entries(0, 37)]
    assert ledger.root() == ref.mth(leaves)
    for seq in (0, 17, 36):
        proof = ledger.prove(seq)
        assert proof.hashes == ref.path(seq, leaves[: proof.tree_size])
        checkpoint = open_checkpoint(proof.checkpoint, ledger.verifier, ledger.origin)
        merkle.verify_inclusion(
            seq, checkpoint.size, proof.leaf_hash, proof.hashes, checkpoint.root
        )
        verify_proof_json(proof.to_json(), ledger.verifier, ledger.origin)
    cproof = ledger.prove_consistency(10, 37)
    merkle.verify_consistency(10, 37, cproof, ledger.root(10), ledger.root(37))
    with pytest.raises(NotFound):
        ledger.prove(37)
    with pytest.raises(InvalidInput):
        ledger.prove_consistency(0, 5)


def test_checkpoints_every_n_entries_and_on_demand(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger(checkpoint_every=10)
    for i in range(25):
        ledger.append(sample_event(i))
    sizes = [c.size for c in ledger.store.checkpoints()]
    assert sizes[:2] == [10, 20]
    row = ledger.checkpoint()
    assert row.size == 25
    assert open_checkpoint(row.note, ledger.verifier, ledger.origin).root == ledger.root(25)


def test_checkpoints_are_published_outside_the_database(
    make_ledger: LedgerFactory, tmp_path: Path
) -> None:
    outside = tmp_path / "other-storage"
    ledger = make_ledger(publish_dirs=[str(outside)])
    ledger.append_many([sample_event(i) for i in range(3)])
    row = ledger.checkpoint()
    ledger.close()
    assert (outside / "checkpoint").read_text() == row.note
    assert (outside / "checkpoints" / "3").read_text() == row.note


def test_checkpoints_on_a_timer(make_ledger: LedgerFactory) -> None:
    import time

    ledger = make_ledger(checkpoint_interval=0.2, checkpoint_every=10**6)
    ledger.append(sample_event(1))
    deadline = time.monotonic() + 10
    while ledger.latest_checkpoint() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    latest = ledger.latest_checkpoint()
    assert latest is not None and latest.size == 1


def test_verification_of_a_healthy_ledger(ledger: Ledger) -> None:
    ledger.append_many([sample_event(i, subject=f"s{i % 3}") for i in range(120)])
    ledger.checkpoint()
    report = ledger.verify()
    assert report.ok, report.to_json()
    assert report.size == 120 and report.payloads_checked == 120
    assert report.root == ledger.root().hex()


@pytest.mark.sqlite_only(
    reason="the SQLite file's triggers; on PostgreSQL: tests/postgres/test_pg_ledger.py's twin"
)
def test_database_refuses_update_and_delete(ledger: Ledger) -> None:
    ledger.append_many([sample_event(i) for i in range(3)])
    ledger.checkpoint()
    conn = sqlite3.connect(ledger.store.path)  # type: ignore[attr-defined]
    statements = [
        "UPDATE ledger_entries SET action = 'x' WHERE seq = 1",
        "DELETE FROM ledger_entries WHERE seq = 2",
        "UPDATE ledger_nodes SET hash = x'00'",
        "DELETE FROM ledger_nodes",
        "DELETE FROM ledger_checkpoints",
        "UPDATE ledger_checkpoints SET note = ''",
        "UPDATE ledger_payloads SET ciphertext = x'00'",
        "DELETE FROM ledger_payloads WHERE seq = 0",
        "DELETE FROM subject_keys",
        "UPDATE subject_keys SET wrapped = x'00'",
    ]
    for statement in statements:
        with pytest.raises(sqlite3.DatabaseError, match=r"append-only|erasure|destroyed|only"):
            conn.execute(statement)
    conn.close()
    assert ledger.verify().ok


def test_reopening_continues_the_same_log(make_ledger: LedgerFactory) -> None:
    first = make_ledger()
    first.append_many([sample_event(i) for i in range(5)])
    first.close()
    second = make_ledger()
    assert second.append(sample_event(5)).seq == 5
    assert second.verify().ok
