"""Crypto-shredding: after erasure nothing can read the subject's content back, and the
ledger and older bundles still verify."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chatledger.errors import LegalHoldActive, NotFound
from chatledger.events import Actor, Entity, Event
from chatledger.ledger.bundle import export_bundle, verify_bundle
from chatledger.ledger.service import Ledger
from chatledger.ledger.writer import WorkContext
from tests.conftest import LedgerFactory, sample_event, stored_bytes

DPO = Actor("user", "dpo-1", "admin")


def test_erase_subject(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append_many([sample_event(i, subject="carol" if i % 2 else "dave") for i in range(10)])
    bundle_before = tmp_path / "before.zip"
    export_bundle(ledger, bundle_before)
    carol_seqs = [
        r.entry.seq for r in ledger.records(0, 10) if r.payload and int(r.entry.attributes["n"]) % 2
    ]
    assert carol_seqs == [1, 3, 5, 7, 9]

    receipt = ledger.erase_subject("carol", DPO, reason="GDPR art. 17, ticket 42")

    for seq in carol_seqs:
        record = ledger.read(seq)
        assert record.payload is None
        assert record.payload_status == "erased"
        assert record.erasure_seq == receipt.seq
        assert record.erased_at is not None
    assert ledger.read(2).payload == {"text": "message number 2"}  # dave is untouched
    erasure = ledger.read(receipt.seq)
    assert erasure.entry.action == "privacy.subject_erased"
    assert erasure.entry.attributes["payloads_erased"] == 5
    assert erasure.entry.attributes["subject"] == ledger.subject_ref("carol")

    # No query finds the content or the key any more, and no bytes remain in the database.
    store = ledger.store
    ref = ledger.subject_ref("carol")
    keys = [k for k in store.subject_keys() if k.subject_ref == ref]
    assert keys and all(k.wrapped is None and k.erasure_seq == receipt.seq for k in keys)
    assert all(store.payload(seq) is None for seq in carol_seqs)
    raw = stored_bytes(ledger)
    for seq in carol_seqs:
        assert f"message number {seq}".encode() not in raw

    report = ledger.verify()
    assert report.ok, report.to_json()
    assert report.payloads_erased == 5
    assert verify_bundle(bundle_before).ok  # older bundles still verify
    bundle_after = tmp_path / "after.zip"
    export_bundle(ledger, bundle_after)
    after = verify_bundle(bundle_after)
    assert after.ok and after.payloads_erased == 5


def test_new_content_after_erasure_gets_a_new_key(ledger: Ledger) -> None:
    ledger.append(sample_event(1, subject="erin"))
    ledger.erase_subject("erin", DPO)
    seq = ledger.append(sample_event(2, subject="erin")).seq
    assert ledger.read(seq).payload == {"text": "message number 2"}
    assert ledger.read(0).payload_status == "erased"
    assert ledger.verify().ok


def test_keys_survive_other_processes_appends_but_not_their_erasures(
    make_ledger: LedgerFactory,
) -> None:
    """Two ledgers on one store stand for two server processes. Appends by the other keep
    this one's subject keys in use; an erasure by the other retires them here too."""
    here, there = make_ledger(), make_ledger()
    first = here.append(sample_event(1, subject="erin")).seq
    there.append(sample_event(2, subject="fred"))
    second = here.append(sample_event(3, subject="erin")).seq
    key_ref = here.store.payload(first).key_ref  # type: ignore[union-attr]
    assert here.store.payload(second).key_ref == key_ref  # type: ignore[union-attr]

    there.erase_subject("erin", DPO)
    third = here.append(sample_event(4, subject="erin")).seq
    assert here.store.payload(third).key_ref != key_ref  # type: ignore[union-attr]
    assert here.read(third).payload == {"text": "message number 4"}
    assert here.read(second).payload_status == "erased"
    report = there.verify()
    assert report.ok, report.to_json()


def test_erasure_refused_under_legal_hold(ledger: Ledger) -> None:
    ledger.append(sample_event(1, subject="frank"))

    def hold(ctx: WorkContext, subject: str) -> str | None:
        return "hold-7 on frank (litigation)" if subject == "frank" else None

    ledger.hold_check = hold
    with pytest.raises(LegalHoldActive, match="hold-7"):
        ledger.erase_subject("frank", DPO)
    assert ledger.read(0).payload == {"text": "message number 1"}
    assert ledger.size() == 1


@pytest.mark.sqlite_only(
    reason="the SQLite file's trigger; on PostgreSQL: test_database_refuses_update_and_delete "
    "in tests/postgres/test_pg_ledger.py"
)
def test_payload_deletion_needs_an_erasure_record(ledger: Ledger) -> None:
    ledger.append(sample_event(1, subject="gina"))
    conn = sqlite3.connect(ledger.store.path)  # type: ignore[attr-defined]
    with pytest.raises(sqlite3.DatabaseError, match="recorded erasure"):
        conn.execute("DELETE FROM ledger_payloads")
    conn.close()


def test_read_many_matches_read(ledger: Ledger) -> None:
    """The batched reader (chat history) sees exactly what one-by-one reads see: present,
    erased and absent payloads, in the order asked, duplicates included."""
    ledger.append(sample_event(0, subject="gina"))
    ledger.append(sample_event(1, subject="hank"))
    ledger.append(Event("auth.login", Actor("user", "u1"), Entity("session", "s1")))
    ledger.erase_subject("gina", DPO)
    seqs = [3, 0, 2, 1, 0]
    batched = ledger.read_many(seqs)
    assert [r.to_json() for r in batched] == [ledger.read(s).to_json() for s in seqs]
    statuses = [r.payload_status for r in batched]
    assert statuses[1:] == ["erased", "none", "present", "erased"]  # seqs 0, 2, 1, 0
    assert ledger.read_many([]) == []
    with pytest.raises(NotFound):
        ledger.read_many([0, 99])
