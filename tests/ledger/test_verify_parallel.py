"""Verification in worker processes gives the report of a single scan, byte for byte.

The ledger here is small, so the work is cut small: batches of 4 entries and ranges of 8
(Tuning), which puts many range boundaries among the entries. Each tamper case is checked at
a boundary and compares the whole report (problems included) of the parallel and the serial
path with the same cut, and the first problem with a serial scan cut as in production."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
from pathlib import Path

import pytest

from chatledger.events import Actor
from chatledger.ledger import merkle
from chatledger.ledger.verify import EntryMac, Tuning, VerifyReport, entry_mac_key
from chatledger.ledger.verify_parallel import ParallelPlan
from chatledger.privacy.keys import MasterSecret
from tests.conftest import LedgerFactory, sample_event
from tests.ledger.tamper import (
    body_of,
    canonical,
    leaf_of,
    raw_database,
    rewrite_body,
    rewrite_history,
)

SIZE = 70
SMALL = Tuning(batch=4, parallel_min=0, range_size=8)
CHECKPOINTS = (13, 32, 48)

sqlite_only = pytest.mark.sqlite_only(reason="edits the SQLite file around its triggers")


@pytest.fixture
def populated(make_ledger: LedgerFactory, data_dir: Path) -> Path:
    """A closed ledger of SIZE entries with checkpoints inside ranges, at a range boundary
    (32) and at the end; returns its SQLite file (on PostgreSQL, a path in its data directory,
    which the cases that edit no file use)."""
    ledger = make_ledger()
    done = 0
    for upto in (*CHECKPOINTS, SIZE):
        ledger.append_many([sample_event(i, subject=f"subject-{i % 4}") for i in range(done, upto)])
        ledger.checkpoint()
        done = upto
    path = Path(getattr(ledger.store, "path", data_dir / "not-sqlite"))
    ledger.close()
    return path


def reports(make_ledger: LedgerFactory, external: str | None = None) -> VerifyReport:
    """The parallel report, once shown equal to the serial ones."""
    ledger = make_ledger()
    try:
        serial = ledger.verify(external_checkpoint=external, jobs=1, tuning=SMALL)
        parallel = ledger.verify(external_checkpoint=external, jobs=3, tuning=SMALL)
        default = ledger.verify(external_checkpoint=external, jobs=1)
    finally:
        ledger.close()
    assert parallel.to_json() == serial.to_json()
    first, usual = parallel.first_problem, default.first_problem
    assert (first and (first.reason, first.seq)) == (usual and (usual.reason, usual.seq))
    assert (parallel.size, parallel.root) == (default.size, default.root)
    return parallel


def first(report: VerifyReport) -> tuple[str, int | None]:
    problem = report.first_problem
    assert problem is not None, "tampering went undetected"
    return problem.reason, problem.seq


def test_clean_ledger(populated: Path, make_ledger: LedgerFactory) -> None:
    report = reports(make_ledger)
    assert report.ok and report.size == SIZE
    assert report.checkpoints_checked == len(CHECKPOINTS) + 1
    assert report.payloads_checked == SIZE


def test_clean_ledger_with_an_external_checkpoint(
    populated: Path, make_ledger: LedgerFactory
) -> None:
    note = (populated.parent / "published-checkpoints" / "checkpoints" / "32").read_text()
    report = reports(make_ledger, external=note)
    assert report.ok and report.external_checkpoint_size == 32


@sqlite_only
@pytest.mark.parametrize("seq", [7, 8, 15, 16, 33])
def test_edited_payload(populated: Path, make_ledger: LedgerFactory, seq: int) -> None:
    with raw_database(populated) as conn:
        (ct,) = conn.execute(
            "SELECT ciphertext FROM ledger_payloads WHERE seq = ?", (seq,)
        ).fetchone()
        flipped = bytearray(ct)
        flipped[20] ^= 0xFF
        conn.execute(
            "UPDATE ledger_payloads SET ciphertext = ? WHERE seq = ?", (bytes(flipped), seq)
        )
    assert first(reports(make_ledger)) == ("payload_tampered", seq)


@sqlite_only
@pytest.mark.parametrize("seq", [8, 23, 24])
def test_edited_envelope_field(populated: Path, make_ledger: LedgerFactory, seq: int) -> None:
    with raw_database(populated) as conn:
        body = body_of(conn, seq)
        body["outcome"] = "failure"
        rewrite_body(conn, seq, canonical(body), update_hash=False)
    assert first(reports(make_ledger)) == ("leaf_hash_mismatch", seq)


@sqlite_only
@pytest.mark.parametrize("seq", [7, 15, 16])
def test_rehashed_entry_breaks_the_chain_across_a_boundary(
    populated: Path, make_ledger: LedgerFactory, seq: int
) -> None:
    with raw_database(populated) as conn:
        body = body_of(conn, seq)
        body["actor"] = {"type": "user", "id": "someone-else"}
        rewrite_body(conn, seq, canonical(body), update_hash=True)
        conn.execute("UPDATE ledger_entries SET actor_id = 'someone-else' WHERE seq = ?", (seq,))
    report = reports(make_ledger)
    assert first(report) == ("entry_forged", seq)
    assert ("chain_broken", seq) in [(p.reason, p.seq) for p in report.problems]


@sqlite_only
def test_edited_search_columns_everywhere(populated: Path, make_ledger: LedgerFactory) -> None:
    """More problems than a report keeps: the same first fifty."""
    with raw_database(populated) as conn:
        conn.execute("UPDATE ledger_entries SET action = 'message.feedback'")
    report = reports(make_ledger)
    assert first(report) == ("index_tampered", 0)
    assert len(report.problems) == 50


@sqlite_only
@pytest.mark.parametrize("seqs", [[7], [8], [15, 16], [8, 9, 10, 11, 12, 13, 14, 15], [40]])
def test_deleted_entries(populated: Path, make_ledger: LedgerFactory, seqs: list[int]) -> None:
    with raw_database(populated) as conn:
        conn.executemany("DELETE FROM ledger_entries WHERE seq = ?", [(s,) for s in seqs])
    report = reports(make_ledger)
    assert first(report) == ("entry_missing", seqs[0])
    assert report.size == seqs[0]


@sqlite_only
@pytest.mark.parametrize("at", [8, 15, 16])
def test_forged_entry_inserted(populated: Path, make_ledger: LedgerFactory, at: int) -> None:
    with raw_database(populated) as conn:
        conn.execute("UPDATE ledger_entries SET seq = -seq - 1 WHERE seq >= ?", (at,))
        conn.execute("UPDATE ledger_entries SET seq = -seq WHERE seq < 0")
        forged = body_of(conn, at - 1)
        forged.update(seq=at, prev=leaf_of(conn, at - 1).hex(), action="message.feedback")
        forged.pop("payload", None)
        body = canonical(forged)
        conn.execute(
            "INSERT INTO ledger_entries SELECT ?, ts, category, 'message.feedback', actor_id, "
            "entity_type, entity_id, outcome, subject, chatbot_id, conversation_id, ?, ?, mac "
            "FROM ledger_entries WHERE seq = ?",
            (at, body, merkle.leaf_hash(body), at - 1),
        )
    report = reports(make_ledger)
    assert first(report) == ("entry_forged", at)
    assert ("entry_inserted", at) in [(p.reason, p.seq) for p in report.problems]


@sqlite_only
@pytest.mark.parametrize("pair", [(7, 8), (15, 16), (9, 10)])
def test_two_entries_swapped(
    populated: Path, make_ledger: LedgerFactory, pair: tuple[int, int]
) -> None:
    a, b = pair
    with raw_database(populated) as conn:
        row_a = conn.execute("SELECT body, leaf_hash FROM ledger_entries WHERE seq = ?", (a,))
        first_row = row_a.fetchone()
        second_row = conn.execute(
            "SELECT body, leaf_hash FROM ledger_entries WHERE seq = ?", (b,)
        ).fetchone()
        conn.execute(
            "UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE seq = ?", (*second_row, a)
        )
        conn.execute(
            "UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE seq = ?", (*first_row, b)
        )
    assert first(reports(make_ledger)) == ("seq_mismatch", a)


@sqlite_only
@pytest.mark.parametrize("keep", [48, 40, 33])
def test_tail_truncated(populated: Path, make_ledger: LedgerFactory, keep: int) -> None:
    with raw_database(populated) as conn:
        conn.execute("DELETE FROM ledger_entries WHERE seq >= ?", (keep,))
    assert first(reports(make_ledger)) == ("log_truncated", keep)


@sqlite_only
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
    assert first(reports(make_ledger)) == ("entry_forged", SIZE)


@sqlite_only
def test_rewritten_history(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        rewrite_history(conn, SIZE, 17)
    report = reports(make_ledger)
    assert first(report) == ("entry_forged", 17)
    assert len(report.problems) == 50  # the checkpoints' mismatches are past the limit


@sqlite_only
@pytest.mark.parametrize(
    "nodes",
    [
        [(1, 3)],  # inside a batch
        [(2, 1)],  # a batch's top
        [(3, 1)],  # a range's top (leaves 8..15)
        [(4, 0)],  # above the ranges: compared by the merge
        [(5, 0)],  # completed at the boundary of 32
        [(1, 0), (4, 0)],  # one bad node per batch: the merge must not report (4, 0)
        [(1, 6), (4, 0)],
        [(2, 5), (1, 20), (3, 3)],
    ],
)
def test_edited_tree_nodes(
    populated: Path, make_ledger: LedgerFactory, nodes: list[tuple[int, int]]
) -> None:
    with raw_database(populated) as conn:
        conn.executemany(
            "UPDATE ledger_nodes SET hash = zeroblob(32) WHERE level = ? AND idx = ?", nodes
        )
    report = reports(make_ledger)
    assert first(report) == ("node_mismatch", None)


@sqlite_only
def test_missing_tree_node(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        conn.execute("DELETE FROM ledger_nodes WHERE level = 4 AND idx = 1")
    assert first(reports(make_ledger)) == ("node_mismatch", None)


@sqlite_only
def test_payload_problems(populated: Path, make_ledger: LedgerFactory) -> None:
    with raw_database(populated) as conn:
        conn.execute("DELETE FROM ledger_payloads WHERE seq = 16")
        conn.execute("INSERT INTO ledger_payload_erasures VALUES (21, 30, 'made up')")
        conn.execute("DELETE FROM ledger_payloads WHERE seq = 21")
        (key_ref,) = conn.execute("SELECT key_ref FROM ledger_payloads WHERE seq = 26").fetchone()
        conn.execute("UPDATE subject_keys SET wrapped = NULL WHERE key_ref = ?", (key_ref,))
    report = reports(make_ledger)
    found = {(p.reason, p.seq) for p in report.problems}
    assert {("payload_missing", 16), ("forged_erasure", 21), ("payload_key_destroyed", 26)} <= found


@sqlite_only
def test_unreadable_subject_key_is_reported_both_ways(
    populated: Path, make_ledger: LedgerFactory
) -> None:
    with raw_database(populated) as conn:
        (key_ref,) = conn.execute("SELECT key_ref FROM ledger_payloads WHERE seq = 26").fetchone()
        conn.execute("UPDATE subject_keys SET wrapped = zeroblob(60) WHERE key_ref = ?", (key_ref,))
    report = reports(make_ledger)
    assert ("payload_key_unreadable", 26) in {(p.reason, p.seq) for p in report.problems}


@sqlite_only
def test_stored_checkpoint_with_forged_signature(
    populated: Path, make_ledger: LedgerFactory
) -> None:
    with raw_database(populated) as conn:
        (note,) = conn.execute("SELECT note FROM ledger_checkpoints WHERE size = 32").fetchone()
        head, sig = note.rstrip("\n").rsplit(" ", 1)
        raw = bytearray(base64.b64decode(sig))
        raw[-1] ^= 0x01
        forged = f"{head} {base64.b64encode(bytes(raw)).decode()}\n"
        conn.execute("UPDATE ledger_checkpoints SET note = ? WHERE size = 32", (forged,))
    assert first(reports(make_ledger)) == ("bad_signature", None)


def test_erasure_is_not_tampering(populated: Path, make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    ledger.erase_subject("subject-1", Actor("user", "dpo", "admin"), reason="art. 17 request")
    ledger.close()
    report = reports(make_ledger)
    assert report.ok and report.payloads_erased == len(range(1, SIZE, 4))


# -- the pieces ----------------------------------------------------------------------------


def test_ranges_are_aligned_powers_of_two() -> None:
    plan = ParallelPlan(2, 1_000_003, set(), set(), True, Tuning())
    ranges = plan.ranges()
    step = ranges[0][1]
    assert step & (step - 1) == 0 and step % Tuning().batch == 0
    assert ranges[0][0] == 0 and ranges[-1][1] == 1_000_003
    assert all(a == b for (_, b), (a, _) in itertools.pairwise(ranges))
    with pytest.raises(ValueError, match="power of two"):
        ParallelPlan(2, 100, set(), set(), True, Tuning(batch=4, range_size=12)).ranges()


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 64, 100])
def test_subtree_levels_match_the_compact_range(count: int) -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(count)]
    levels = merkle.subtree_levels(leaves)
    stack = merkle.CompactRange()
    nodes = {}
    for leaf in leaves:
        for level, index, digest in stack.append(leaf):
            nodes[(level, index)] = digest
    assert nodes == {
        (lvl, i): h for lvl in range(1, len(levels)) for i, h in enumerate(levels[lvl])
    }
    for size in range(1, count + 1):
        prefix = merkle.prefix_subtrees(levels, size)
        assert [lvl for lvl, _ in prefix] == [k[0] for k in merkle.frontier_keys(size)]
        assert merkle.fold_ranges([h for _, h in prefix]) == merkle.root_from_leaves(leaves[:size])


def test_append_subtree_nodes_completes_what_leaves_would() -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(32)]
    by_leaf = merkle.CompactRange()
    expected = [n for leaf in leaves for n in by_leaf.append(leaf) if n[0] > 2]
    by_subtree = merkle.CompactRange()
    found = []
    for start in range(0, 32, 4):
        top = merkle.subtree_levels(leaves[start : start + 4])[2][0]
        found += by_subtree.append_subtree_nodes(2, top)
    assert found == expected
    assert by_subtree.hashes() == by_leaf.hashes() and by_subtree.size == 32


@pytest.mark.parametrize("key_size", [0, 16, 32, 64, 65, 100])
def test_entry_mac_is_hmac_sha256(key_size: int) -> None:
    key = os.urandom(key_size)
    for message in (b"", b"x", os.urandom(32), os.urandom(200)):
        assert EntryMac(key)(message) == hmac.digest(key, message, "sha256")


def test_entry_mac_key_gives_the_master_secrets_codes() -> None:
    master = MasterSecret(os.urandom(32))
    key = entry_mac_key(master)
    assert key is not None
    leaf = os.urandom(32)
    assert EntryMac(key)(leaf) == master.entry_mac(leaf)
