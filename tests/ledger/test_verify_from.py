"""Verifying from a seq: what remains after the oldest entries went to an archive (detached
PostgreSQL partitions) still verifies, anchored by the signed checkpoints that cover it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatledger.cli.main import app
from chatledger.errors import InvalidInput
from tests.conftest import LedgerFactory, sample_event
from tests.ledger.tamper import body_of, canonical, raw_database, rewrite_body

pytestmark = pytest.mark.sqlite_only(
    reason="removes the archived prefix straight from the SQLite file; on PostgreSQL: "
    "tests/postgres/test_pg_partitions.py detaches it the documented way"
)

SIZE = 40
START = 16


def build(make_ledger: LedgerFactory, checkpoints: tuple[int, ...] = (20, SIZE)) -> Path:
    ledger = make_ledger()
    done = 0
    for size in checkpoints:
        ledger.append_many([sample_event(i, subject=f"s{i % 4}") for i in range(done, size)])
        ledger.checkpoint()
        done = size
    path = Path(ledger.store.path)  # type: ignore[attr-defined]
    ledger.close()
    return path


def archive_prefix(path: Path, start: int = START) -> None:
    """What detaching and dropping the oldest partitions leaves: no entries, no payloads
    below ``start``; the tree nodes stay."""
    with raw_database(path) as conn:
        conn.execute("DELETE FROM ledger_payloads WHERE seq < ?", (start,))
        conn.execute("DELETE FROM ledger_entries WHERE seq < ?", (start,))


def test_every_start_of_an_intact_ledger_verifies(make_ledger: LedgerFactory) -> None:
    build(make_ledger)
    ledger = make_ledger()
    for start in (0, 1, 7, 16, 33, 39, 40):
        report = ledger.verify(start=start)
        assert report.ok, (start, report.to_json())
        assert report.start == start and report.size == SIZE
        assert report.root == ledger.root(SIZE).hex()
    with pytest.raises(InvalidInput):
        ledger.verify(start=SIZE + 1)


def test_the_log_after_an_archived_prefix_verifies(make_ledger: LedgerFactory) -> None:
    archive_prefix(build(make_ledger))
    ledger = make_ledger()
    whole = ledger.verify()
    assert not whole.ok and whole.problems[0].reason == "entry_missing"
    report = ledger.verify(start=START)
    assert report.ok, report.to_json()
    assert (report.checkpoints_checked, report.checkpoints_skipped) == (2, 0)
    assert report.payloads_checked == SIZE - START
    assert report.to_json()["from_seq"] == START
    ledger.append_many([sample_event(i) for i in range(SIZE, SIZE + 5)])
    ledger.checkpoint()
    assert ledger.verify(start=START).ok


def test_a_checkpoint_before_the_start_is_skipped(make_ledger: LedgerFactory) -> None:
    archive_prefix(build(make_ledger, checkpoints=(10, SIZE)))
    report = make_ledger().verify(start=START)
    assert report.ok, report.to_json()
    assert (report.checkpoints_checked, report.checkpoints_skipped) == (1, 1)


def test_without_a_checkpoint_after_the_start_nothing_anchors_the_prefix(
    make_ledger: LedgerFactory,
) -> None:
    path = build(make_ledger, checkpoints=(10,))
    ledger = make_ledger()
    ledger.append_many([sample_event(i) for i in range(10, SIZE)])  # no checkpoint after 10
    ledger.close()
    archive_prefix(path)
    report = make_ledger().verify(start=START)
    assert not report.ok
    assert report.first_problem is not None
    assert report.first_problem.reason == "start_unanchored"


def test_a_forged_node_of_the_archived_prefix_is_caught(make_ledger: LedgerFactory) -> None:
    path = build(make_ledger)
    archive_prefix(path)
    with raw_database(path) as conn:  # the subtree hash of entries 0..15
        conn.execute("UPDATE ledger_nodes SET hash = ? WHERE level = 4 AND idx = 0", (b"\1" * 32,))
    report = make_ledger().verify(start=START)
    assert not report.ok
    assert {p.reason for p in report.problems} >= {"checkpoint_root_mismatch"}


def test_tampering_after_the_start_is_found_as_before(make_ledger: LedgerFactory) -> None:
    path = build(make_ledger)
    archive_prefix(path)
    with raw_database(path) as conn:
        body = body_of(conn, 25)
        body["attributes"] = {**body["attributes"], "n": 99}  # type: ignore[dict-item]
        rewrite_body(conn, 25, canonical(body), update_hash=False)
    report = make_ledger().verify(start=START)
    assert report.first_problem is not None
    assert (report.first_problem.reason, report.first_problem.seq) == ("leaf_hash_mismatch", 25)


def test_the_cli_verifies_from_a_seq(make_ledger: LedgerFactory, data_dir: Path) -> None:
    archive_prefix(build(make_ledger))
    runner = CliRunner()
    whole = runner.invoke(app, ["ledger", "verify", "--data-dir", str(data_dir)])
    assert whole.exit_code != 0
    done = runner.invoke(
        app, ["ledger", "verify", "--from", str(START), "--json", "--data-dir", str(data_dir)]
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["ok"] and result["from_seq"] == START
