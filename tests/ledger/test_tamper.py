"""The tamper catalogue: each case is named after its mutation and must be detected with the
right seq (or checkpoint) and reason. Edits go straight to the SQLite file, around triggers."""

from __future__ import annotations

import base64
import shutil
import sqlite3
from pathlib import Path

import pytest

from chatledger.errors import IntegrityError, ProofError
from chatledger.events import Actor
from chatledger.ledger import merkle
from chatledger.ledger.note import Checkpoint, NoteSigner
from chatledger.ledger.service import verify_proof_json
from chatledger.ledger.verify import VerifyReport
from tests.conftest import LedgerFactory, sample_event
from tests.ledger.tamper import (
    body_of,
    canonical,
    leaf_of,
    raw_database,
    rewrite_body,
    rewrite_history,
)

pytestmark = pytest.mark.sqlite_only(
    reason="edits the SQLite file around its triggers; on PostgreSQL: "
    "tests/postgres/test_pg_tamper.py (which also runs the cases here that edit nothing)"
)

SIZE = 40


@pytest.fixture
def populated(make_ledger: LedgerFactory) -> Path:
    """A closed ledger of SIZE entries with a stored checkpoint; returns its database path."""
    ledger = make_ledger()
    ledger.append_many([sample_event(i, subject=f"subject-{i % 4}") for i in range(SIZE)])
    ledger.checkpoint()
    path = Path(ledger.store.path)  # type: ignore[attr-defined]
    ledger.close()
    return path


def verify_again(make_ledger: LedgerFactory, external: str | None = None) -> VerifyReport:
    ledger = make_ledger()
    report = ledger.verify(external_checkpoint=external)
    ledger.close()
    return report


def assert_detected(report: VerifyReport, reason: str, seq: int | None) -> None:
    assert not report.ok, "tampering went undetected"
    first = report.first_problem
    assert first is not None
    assert (first.reason, first.seq) == (reason, seq), report.to_json()


def test_untouched_ledger_verifies(populated: Path, make_ledger: LedgerFactory) -> None:
    assert verify_again(make_ledger).ok


def test_edited_payload(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        (ct,) = conn.execute("SELECT ciphertext FROM ledger_payloads WHERE seq = 5").fetchone()
        flipped = bytearray(ct)
        flipped[20] ^= 0xFF
        conn.execute("UPDATE ledger_payloads SET ciphertext = ? WHERE seq = 5", (bytes(flipped),))
    assert_detected(verify_again(make_ledger), "payload_tampered", 5)


def test_payload_moved_to_another_entry(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        row = conn.execute(
            "SELECT key_ref, nonce, ciphertext FROM ledger_payloads WHERE seq = 4"
        ).fetchone()
        conn.execute(
            "UPDATE ledger_payloads SET key_ref = ?, nonce = ?, ciphertext = ? WHERE seq = 8",
            row,
        )
    assert_detected(verify_again(make_ledger), "payload_tampered", 8)


def test_edited_envelope_field(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        body = body_of(conn, 7)
        body["outcome"] = "failure"
        rewrite_body(conn, 7, canonical(body), update_hash=False)
    assert_detected(verify_again(make_ledger), "leaf_hash_mismatch", 7)


def test_edited_envelope_field_with_rehashed_leaf(
    populated: Path, make_ledger: LedgerFactory
) -> None:
    with raw_database(populated) as conn:
        body = body_of(conn, 7)
        body["actor"] = {"type": "user", "id": "someone-else"}
        rewrite_body(conn, 7, canonical(body), update_hash=True)
        conn.execute("UPDATE ledger_entries SET actor_id = 'someone-else' WHERE seq = 7")
    report = verify_again(make_ledger)
    # Re-hashing needs the MAC key, which never enters the database; the chain breaks too.
    assert_detected(report, "entry_forged", 7)
    assert ("chain_broken", 7) in [(p.reason, p.seq) for p in report.problems]


def test_edited_search_column(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        conn.execute("UPDATE ledger_entries SET action = 'message.feedback' WHERE seq = 12")
    assert_detected(verify_again(make_ledger), "index_tampered", 12)


def test_deleted_entry(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        conn.execute("DELETE FROM ledger_entries WHERE seq = 10")
    assert_detected(verify_again(make_ledger), "entry_missing", 10)


def test_forged_entry_inserted(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        conn.execute("UPDATE ledger_entries SET seq = -seq - 1 WHERE seq >= 10")
        conn.execute("UPDATE ledger_entries SET seq = -seq WHERE seq < 0")  # now 11..SIZE
        forged = body_of(conn, 9)
        forged.update(seq=10, prev=leaf_of(conn, 9).hex(), action="message.feedback")
        forged.pop("payload", None)
        body = canonical(forged)
        conn.execute(
            "INSERT INTO ledger_entries VALUES (10, ?, 'message', 'message.feedback', ?, "
            "'message', 'm9', 'success', ?, 'bot-1', 'c4', ?, ?, ?)",
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


def test_forged_entry_appended_at_the_tail(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        forged = body_of(conn, SIZE - 1)
        forged.update(seq=SIZE, prev=leaf_of(conn, SIZE - 1).hex(), id="forged")
        forged.pop("payload", None)
        body = canonical(forged)
        conn.execute(
            "INSERT INTO ledger_entries SELECT ?, ts, category, action, actor_id, entity_type, "
            "entity_id, outcome, subject, chatbot_id, conversation_id, ?, ?, mac "
            "FROM ledger_entries WHERE seq = ?",
            (SIZE, body, merkle.leaf_hash(body), SIZE - 1),
        )
    assert_detected(verify_again(make_ledger), "entry_forged", SIZE)


def test_two_entries_swapped(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        a = conn.execute("SELECT body, leaf_hash FROM ledger_entries WHERE seq = 12").fetchone()
        b = conn.execute("SELECT body, leaf_hash FROM ledger_entries WHERE seq = 13").fetchone()
        conn.execute("UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE seq = 12", b)
        conn.execute("UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE seq = 13", a)
    assert_detected(verify_again(make_ledger), "seq_mismatch", 12)


def test_tail_truncated(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        conn.execute("DELETE FROM ledger_entries WHERE seq >= ?", (SIZE - 5,))
    assert_detected(verify_again(make_ledger), "log_truncated", SIZE - 5)


def test_tail_truncated_with_its_checkpoints(populated: Path, make_ledger: LedgerFactory) -> None:
    published = (populated.parent / "published-checkpoints" / "checkpoint").read_text()
    with raw_database(populated) as conn:
        conn.execute("DELETE FROM ledger_entries WHERE seq >= ?", (SIZE - 5,))
        conn.execute("DELETE FROM ledger_nodes")
        conn.execute("DELETE FROM ledger_checkpoints")
    # Without the checkpoint held elsewhere the shorter log looks whole (nodes aside) ...
    report = verify_again(make_ledger, external=published)
    assert_detected(report, "log_truncated", SIZE - 5)


def test_database_replaced_by_an_older_copy(make_ledger: LedgerFactory, tmp_path: Path) -> None:
    ledger = make_ledger()
    ledger.append_many([sample_event(i) for i in range(20)])
    ledger.checkpoint()
    path = Path(ledger.store.path)  # type: ignore[attr-defined]
    backup = tmp_path / "backup.db"
    src, dst = sqlite3.connect(path), sqlite3.connect(backup)
    src.backup(dst)
    src.close()
    dst.close()
    ledger.append_many([sample_event(i) for i in range(20, 50)])
    ledger.checkpoint()  # published to the directory outside the database
    ledger.close()
    published = (path.parent / "published-checkpoints" / "checkpoint").read_text()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, path)
    assert verify_again(make_ledger).ok  # the old copy is internally consistent ...
    report = verify_again(make_ledger, external=published)  # ... but not against the outside
    assert_detected(report, "log_truncated", 20)


def test_rewritten_history_against_checkpoint(populated: Path, make_ledger: LedgerFactory) -> None:
    """Every entry re-hashed and re-linked consistently: only signatures and MACs catch it."""
    with raw_database(populated) as conn:
        rewrite_history(conn, SIZE, 3)
    report = verify_again(make_ledger)
    assert_detected(report, "entry_forged", 3)
    assert any(p.reason == "checkpoint_root_mismatch" for p in report.problems)


def test_edited_tree_node(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        conn.execute("UPDATE ledger_nodes SET hash = zeroblob(32) WHERE level = 2 AND idx = 3")
    report = verify_again(make_ledger)
    assert_detected(report, "node_mismatch", None)
    assert report.problems[0].details["first_seq"] == 12


def test_payload_deleted_without_erasure(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        conn.execute("DELETE FROM ledger_payloads WHERE seq = 21")
    assert_detected(verify_again(make_ledger), "payload_missing", 21)


def test_forged_erasure_record(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        conn.execute("INSERT INTO ledger_payload_erasures VALUES (21, 30, 'made up')")
        conn.execute("DELETE FROM ledger_payloads WHERE seq = 21")
    assert_detected(verify_again(make_ledger), "forged_erasure", 21)


def test_subject_key_destroyed_behind_the_ledgers_back(
    populated: Path, make_ledger: LedgerFactory
) -> None:
    with raw_database(populated) as conn:
        (key_ref,) = conn.execute("SELECT key_ref FROM ledger_payloads WHERE seq = 2").fetchone()
        conn.execute("UPDATE subject_keys SET wrapped = NULL WHERE key_ref = ?", (key_ref,))
    assert_detected(verify_again(make_ledger), "payload_key_destroyed", 2)


def _flip_signature(note: str) -> str:
    head, sig = note.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 0x01
    return f"{head} {base64.b64encode(bytes(raw)).decode()}\n"


def test_stored_checkpoint_with_forged_signature(
    populated: Path, make_ledger: LedgerFactory
) -> None:
    with raw_database(populated) as conn:
        (note,) = conn.execute("SELECT note FROM ledger_checkpoints").fetchone()
        conn.execute("UPDATE ledger_checkpoints SET note = ?", (_flip_signature(note),))
    assert_detected(verify_again(make_ledger), "bad_signature", None)


def test_external_checkpoint_with_forged_signature(
    populated: Path, make_ledger: LedgerFactory
) -> None:
    note = (populated.parent / "published-checkpoints" / "checkpoint").read_text()
    report = verify_again(make_ledger, external=_flip_signature(note))
    assert_detected(report, "bad_signature", None)


def test_checkpoint_signed_by_another_key(populated: Path, make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    impostor = NoteSigner.generate(ledger.origin)
    forged = Checkpoint(ledger.origin, SIZE, ledger.root()).sign(impostor)
    ledger.close()
    report = verify_again(make_ledger, external=forged)
    assert_detected(report, "unknown_key", None)


def test_tampered_inclusion_proof(populated: Path, make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    proof = ledger.prove(17).to_json()
    verify_proof_json(proof, ledger.verifier, ledger.origin)
    for index in range(len(proof["hashes"])):
        tampered = dict(proof)
        hashes = list(proof["hashes"])
        hashes[index] = ("0" if hashes[index][0] != "0" else "1") + hashes[index][1:]
        tampered["hashes"] = hashes
        with pytest.raises(ProofError) as err:
            verify_proof_json(tampered, ledger.verifier, ledger.origin)
        assert err.value.reason == "root_mismatch"
    wrong_leaf = dict(proof, leaf_index=16)
    with pytest.raises(IntegrityError):
        verify_proof_json(wrong_leaf, ledger.verifier, ledger.origin)
    ledger.close()


def test_edited_entry_between_erased_payloads_and_their_erasure(
    populated: Path, make_ledger: LedgerFactory
) -> None:
    """The scan stops at the edited entry, before the erasure event that the erased
    payloads cite: the edit is named, not the (unchecked) erasures of earlier payloads."""
    ledger = make_ledger()
    erasure = ledger.erase_subject("subject-1", Actor("user", "dpo", "admin")).seq
    ledger.close()
    assert erasure == SIZE
    with raw_database(populated) as conn:
        body = body_of(conn, 30)
        body["outcome"] = "failure"
        rewrite_body(conn, 30, canonical(body), update_hash=False)
    report = verify_again(make_ledger)
    assert_detected(report, "leaf_hash_mismatch", 30)
    assert "forged_erasure" not in {p.reason for p in report.problems}, report.to_json()


def test_forged_erasure_citing_beyond_the_log(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        conn.execute("INSERT INTO ledger_payload_erasures VALUES (21, 9999, 'made up')")
        conn.execute("DELETE FROM ledger_payloads WHERE seq = 21")
    assert_detected(verify_again(make_ledger), "forged_erasure", 21)


def test_erasure_is_not_tampering(populated: Path, make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    ledger.erase_subject("subject-1", Actor("user", "dpo", "admin"), reason="art. 17 request")
    ledger.close()
    assert verify_again(make_ledger).ok
