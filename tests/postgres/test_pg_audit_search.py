"""Audit search and SIEM forwarding on PostgreSQL, as the application role.

The search contract of tests/audit/test_search.py runs here unchanged (every filter with role
and severity, full text with snippets, erased text never found again, cursor pagination both
ways, the access event): this package's ``make_ledger`` opens those ledgers on PostgreSQL.
Then what is PostgreSQL's own: the same results as SQLite's FTS5 for the same queries, the
index shared by several processes, erasure reaching the index rows, the grants of migration
10, and forwarder cursors kept in the database and shared by processes without
double-forwarding.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chatledger.audit.formats import FormatContext, get_format
from chatledger.audit.forward import CursorStore, forward_once, start_forwarders
from chatledger.audit.pg_textindex import PgAuditIndex, to_tsquery_text, tsvector_text
from chatledger.audit.search import Filters, prepare_export, search
from chatledger.audit.textindex import index_for
from chatledger.config import Settings
from chatledger.errors import StorageError
from chatledger.events import Actor
from chatledger.ledger.service import Ledger
from chatledger.runtime import open_ledger
from chatledger.store.pg_schema_audit import TABLES
from chatledger.store.postgres_schema import LEDGER_TABLES, main
from tests.audit.receivers import HttpReceiver
from tests.audit.test_forward import (  # noqa: F401 - its test_* run here too
    config,
    events,
    hec_seqs,
    test_restart_mid_way_loses_nothing,
    test_splunk_hec_retries_until_accepted,
    test_start_at_end_and_filters,
    test_webhook_is_signed_and_filtered,
)
from tests.audit.test_search import (  # noqa: F401 - its test_* run here on PostgreSQL
    all_pages,
    message,
    mixed,
    seqs,
    test_a_search_never_returns_erased_text_even_before_the_sweep,
    test_bad_input_is_refused,
    test_cursor_pages_are_stable_while_the_ledger_grows,
    test_filters_match_a_plain_scan,
    test_full_text_snippet_and_erasure,
    test_index_follows_another_process_writing,
    test_items_carry_the_entry_and_payload_status_never_the_payload,
    test_role_and_severity_are_exact_before_the_index_catches_up,
    test_search_is_recorded_with_its_query_pseudonymised,
    test_time_range,
)
from tests.conftest import LedgerFactory
from tests.pg_server import PgServer
from tests.postgres.conftest import APP_ROLE, OWNER_ROLE, PgDatabase

DPO = Actor("user", "dpo", "operator")

TEXTS = [
    "My order 77 never arrived, I want a refund",
    "Where is the refund policy?",
    "Crème BRÛLÉE recipe, please",
    "creme brulee without the accents",
    "snake_case words and foo_bar",
    "O'Reilly's book: the refund-policy FAQ",
    "naïve café, déjà vu",
    "Ünïcödé ΣΊΣΥΦΟΣ and σίσυφος",
    "policy first, refund later",
    "back\\slash and 'quotes' and NEAR(a b) col:foo OR AND NOT",
    "x1 x2 x3 " * 40 + "needle at the end of a long text",
]

QUERIES = [
    "refund", "REFUND", "refu*", '"refund policy"', "refund policy", '"policy refund"',
    "polic* refund", '"refund pol"*', "creme", "brûlée", "BRUL*", "cafe", "deja vu",
    '"deja vu"', "foo_bar", "snake_case", "o'reilly", "reilly", "77", "nothing-here",
    'refund OR "x"', "NEAR(a b)", "col:foo", "back\\slash", "'quotes'", "σίσυφος",
    "ΣΊΣΥΦΟΣ", "unicode", "needle", '"x3 needle"', "x*",
]  # fmt: skip


def results(ledger: Ledger, q: str) -> list[tuple[int, str, list[tuple[int, int]]]]:
    out = []
    for order in ("newest", "oldest"):
        page = search(ledger, Filters.parse(q=q), order=order, limit=200)
        for item in page.items:
            assert item.match is not None
            out.append((item.seq, item.match.snippet, item.match.highlights))
    return out


def test_the_shared_tests_run_here_on_postgresql(ledger: Ledger) -> None:
    assert ledger.store.dialect == "postgresql"
    assert isinstance(index_for(ledger), PgAuditIndex)


def test_full_text_finds_what_sqlite_finds(ledger: Ledger, tmp_path: Path) -> None:
    """The same texts and queries on both backends: the same entries, snippets and
    highlights (words folded for case and accents, phrases, prefixes, operators as words)."""
    lite = open_ledger(Settings.load(tmp_path / "lite"))
    try:
        for i, text in enumerate(TEXTS):
            for target in (ledger, lite):
                target.append(message(i, text, subject=f"s{i}"))
        for q in QUERIES:
            expected = results(lite, q)
            assert results(ledger, q) == expected, q
        assert results(ledger, "refund")  # not all empty
    finally:
        lite.close()


def test_tsvector_and_tsquery_syntax(ledger: Ledger) -> None:
    assert tsvector_text("Refund, refund! O'Reilly") == "'refund':1,2 'o':3 'reilly':4"
    assert tsvector_text("back\\slash 'x'") == "'back':1 'slash':2 'x':3"
    assert tsvector_text(" ".join(["w"] * 300)).count(",") == 255  # 256 positions kept
    long = " ".join(f"w{i}" for i in range(17_000))
    assert "'w16382':16383 'w16383':16383" in tsvector_text(long)  # positions stop there
    assert to_tsquery_text('refund "deja vu" polic* "a b"* x_y*') == (
        "'refund' & ('deja' <-> 'vu') & 'polic':* & ('a' <-> 'b') & ('x' <-> 'y':*)"
    )
    assert to_tsquery_text("it's") == "('it' <-> 's')"
    assert to_tsquery_text("_") == ""
    # what PostgreSQL makes of them (quotes inside lexemes, long texts)
    for text, q, hit in [
        ("l'été à Paris", "ete", True),
        ("ǅemal's   ΣΊΣΥΦΟΣ", "σισυφος", True),
        (long, '"w16381 w16382"', True),
        (long, "w169*", True),
        ("a b c", '"a c"', False),
    ]:
        rows = ledger.store.query(
            "SELECT CAST(? AS tsvector) @@ CAST(? AS tsquery)",
            (tsvector_text(text), to_tsquery_text(q)),
        )
        assert rows == [(hit,)], (text[:20], q)


@pytest.mark.parametrize("gin_matches", [0, 10**9])
def test_text_search_walks_or_goes_through_gin_alike(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, gin_matches: int
) -> None:
    """Small windows, so that pages span many; GIN_MATCHES 0 keeps walking the windows,
    10**9 sends the rest of the range to GIN after the first indexed window. The newest
    entries are left unindexed (the first windows learn nothing there)."""
    import chatledger.audit.search as search_module

    monkeypatch.setattr(search_module, "FIRST_WINDOW", 16)
    monkeypatch.setattr(search_module, "GIN_MATCHES", gin_matches)
    ledger.append_many(mixed(400))
    index = index_for(ledger)
    index.catch_up()
    ledger.append_many(mixed(40))
    monkeypatch.setattr(index, "catch_up", lambda **kw: 0)
    bodies = [e.to_json() for e in ledger.entries(0, 400)]
    cases: list[tuple[dict[str, str], Any]] = [
        ({"q": "hello"}, lambda b: b["action"] == "message.user"),
        ({"q": "answer", "chatbot_id": "bot-2"}, lambda b: b["action"] == "message.answer"),
        ({"q": '"number 15*"'}, lambda b: b["entity"]["id"] == "m15"),  # a phrase, no prefix
        ({"q": "number 15*"}, lambda b: b["entity"]["id"] in {"m15", "m150", "m155"}),
        ({"q": "zzz"}, lambda b: False),
    ]
    for raw, pred in cases:
        expected = sorted((b["seq"] for b in bodies if pred(b)), reverse=True)
        assert all_pages(ledger, Filters.parse(**raw), limit=7) == expected, raw
        oldest = all_pages(ledger, Filters.parse(**raw), limit=9, order="oldest")
        assert oldest == sorted(expected), raw


def test_a_query_without_a_word_finds_nothing(ledger: Ledger) -> None:
    ledger.append(message(1, "snake_case"))
    assert search(ledger, Filters.parse(q="_")).items == []


def test_a_text_erased_while_it_is_read_never_enters_the_index(
    ledger: Ledger, make_ledger: LedgerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The indexer read the payload, then the subject was erased (by another process)
    before the batch was written: the insert sees the destroyed key and skips the text,
    even with no sweep to clean up after it."""
    ledger.append(message(1, "zanzibar is where I live", subject="dave"))
    other = make_ledger()
    read = ledger.read

    def read_then_erase(seq: int) -> Any:
        record = read(seq)
        other.erase_subject("dave", DPO)
        return record

    index = index_for(ledger)
    assert isinstance(index, PgAuditIndex)
    monkeypatch.setattr(ledger, "read", read_then_erase)
    monkeypatch.setattr(index, "_sweep", lambda: 0)
    index.catch_up()
    assert index.state().indexed_through == 1  # the erasure's own entry came after
    assert index.indexed_text([0]) == set()


def test_one_process_indexes_at_a_time(
    ledger: Ledger, make_ledger: LedgerFactory, pg_url: str
) -> None:
    ledger.append_many(mixed(40))
    index = index_for(ledger)
    assert isinstance(index, PgAuditIndex)
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (index.lock_key,))
        assert index.catch_up() == 0  # another process is at it: no wait
        page = search(ledger, Filters.parse(q="hello"))
        assert page.items == [] and page.text_index is not None
        assert not page.text_index.complete
    assert index.catch_up() == 40
    # two processes catching up at once: each batch written once, the state consistent
    others = [make_ledger() for _ in range(2)]
    for other in others:
        other.append_many(mixed(2500))
    threads = [
        threading.Thread(target=lambda o=o: index_for(o).catch_up(max_entries=2000))
        for o in others
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while not index.state().complete:
        index.catch_up()
    texts = ledger.store.query("SELECT count(*) FROM audit_text")[0][0]
    assert texts == sum(1 for e in ledger.entries(0, ledger.size()) if e.action.startswith("m"))
    assert len(search(ledger, Filters.parse(q="hello"), limit=200).items) == 200


def test_the_app_role_writes_the_index_and_nothing_more(pg_database: PgDatabase) -> None:
    with psycopg.connect(pg_database.admin_url) as conn:
        for table in TABLES:
            owner, may_delete = conn.execute(
                "SELECT pg_get_userbyid(relowner), has_table_privilege(%s, oid, 'DELETE') "
                "FROM pg_class WHERE oid = %s::regclass",
                (APP_ROLE, table),
            ).fetchone()
            assert owner == OWNER_ROLE and may_delete, table
        for table in LEDGER_TABLES:
            row = conn.execute(
                "SELECT has_table_privilege(%s, %s, 'UPDATE') OR "
                "has_table_privilege(%s, %s, 'DELETE')",
                (APP_ROLE, table, APP_ROLE, table),
            ).fetchone()
            assert row == (False,), table


def _forget_migration_10(admin_url: str) -> None:
    """Make the schema look like one migrated before migration 10 existed."""
    with psycopg.connect(admin_url) as conn:
        conn.execute(
            "DROP TABLE audit_text, audit_facets, audit_index_state, audit_forwarder_cursors"
        )
        for index in ("ts", "action", "actor", "outcome"):
            conn.execute(f"DROP INDEX audit_entries_{index}")
        conn.execute("DROP INDEX audit_erasures_by_erasure")
        conn.execute("DELETE FROM schema_migrations WHERE version = 10")


def test_migration_10_on_a_database_set_up_before_it(
    pg_server: PgServer, pg_database: PgDatabase, tmp_path: Path
) -> None:
    """The application role cannot create the audit tables: a search that needs them says
    which command to run; the owner's `migrate` creates them and grants the application
    role its rights on them (no setup-roles needed)."""
    settings = Settings.load(tmp_path / "data", database_url=pg_database.url)
    first = open_ledger(settings)
    first.append_many(mixed(20))
    first.close()
    _forget_migration_10(pg_database.admin_url)
    with pytest.raises(StorageError, match="need the owner role"):
        open_ledger(settings)
    as_owner = pg_server.url(pg_database.name, search_path=pg_database.schema, role=OWNER_ROLE)
    assert main(["migrate", "--url", as_owner]) == 0
    ledger = open_ledger(settings)
    try:
        assert len(search(ledger, Filters.parse(q="hello")).items) == 4
        assert len(search(ledger, Filters.parse(role="admin")).items) == 6
        with closing(CursorStore(ledger)) as cursors:
            cursors.advance("x", 3, 4)
            assert cursors.get("x") is not None
    finally:
        ledger.close()


def test_erasure_reaches_the_index_rows(ledger: Ledger, pg_admin_url: str) -> None:
    ledger.append(message(1, "my address is 1 Elm Street", subject="erin"))
    ledger.append(message(2, "Elm trees are nice", subject="frank"))
    assert seqs(search(ledger, Filters.parse(q="elm"))) == [1, 0]
    ledger.erase_subject("erin", DPO)
    index = index_for(ledger)
    assert index.erasures_pending()
    assert seqs(search(ledger, Filters.parse(q="elm"))) == [1]  # the sweep ran first
    assert not index.erasures_pending()
    assert index.compact_pending() and index.compact() and not index.compact_pending()
    with psycopg.connect(pg_admin_url) as conn:
        bodies = [r[0] for r in conn.execute("SELECT body FROM audit_text")]
    assert bodies == ["Elm trees are nice"]


def test_compaction_vacuums_when_the_role_owns_the_table(pg_admin_url: str, tmp_path: Path) -> None:
    ledger = open_ledger(Settings.load(tmp_path / "data", database_url=pg_admin_url))
    try:
        ledger.append(message(1, "erase me please", subject="gina"))
        assert len(search(ledger, Filters.parse(q="erase")).items) == 1
        ledger.erase_subject("gina", DPO)
        assert search(ledger, Filters.parse(q="erase")).items == []
        index = index_for(ledger)
        assert index.compact_pending() and index.compact()
        assert not index.compact_pending()
    finally:
        ledger.close()


def test_exports_take_the_index_filters_too(ledger: Ledger) -> None:
    ledger.append_many(mixed(60))
    for raw, expected in [
        ({"q": "hello"}, [s for s in range(60) if s % 5 == 0]),
        ({"role": "admin", "q": None}, [s for s in range(60) if s % 5 == 4 or s % 10 == 7]),
    ]:
        exporter = prepare_export(
            ledger,
            Filters.parse(**raw),  # type: ignore[arg-type]
            get_format("jsonl"),
            FormatContext(origin=ledger.origin),
        )
        lines = b"".join(exporter.chunks()).splitlines()
        assert [json.loads(line)["seq"] for line in lines] == expected, raw


# -- forwarder cursors ------------------------------------------------------------------------


def test_cursors_are_rows_that_outlive_a_restart(
    make_ledger: LedgerFactory, data_dir: Path, pg_admin_url: str
) -> None:
    receiver = HttpReceiver(token="t")
    cfg = config(data_dir, name="hec", type="splunk_hec", url=receiver.url, token="t")
    try:
        first = make_ledger()
        first.append_many(events(30))
        [report] = forward_once(first, [cfg], fallback_dir=data_dir)
        assert report.delivered == 30
        first.close()
        second = make_ledger()  # a restart: a new store, the same database
        second.append_many(events(10, start=30))
        [report] = forward_once(second, [cfg], fallback_dir=data_dir)
    finally:
        receiver.close()
    assert report.delivered == 10 and report.last_seq == 39
    assert sorted(hec_seqs(receiver.accepted)) == list(range(40))
    assert not (data_dir / "forwarders").exists()
    with psycopg.connect(pg_admin_url) as conn:
        row = conn.execute(
            "SELECT last_seq, delivered FROM audit_forwarder_cursors WHERE name = 'hec'"
        ).fetchone()
    assert row == (39, 40)


def test_cursor_files_of_an_earlier_release_are_taken_over(ledger: Ledger, data_dir: Path) -> None:
    ledger.append_many(events(20))
    folder = data_dir / "forwarders"
    folder.mkdir(parents=True)
    old = {"name": "hook", "last_seq": 11, "delivered": 12, "updated_at": "2026-01-01T00:00Z",
           "failures": 0, "last_error": None, "last_error_at": None}  # fmt: skip
    (folder / "hook.cursor.json").write_text(json.dumps(old))
    receiver = HttpReceiver()
    try:
        cfg = config(data_dir, name="hook", type="webhook", url=receiver.url)
        [report] = forward_once(ledger, [cfg], fallback_dir=data_dir)
    finally:
        receiver.close()
    assert report.delivered == 8
    got = [e["seq"] for r in receiver.accepted for e in json.loads(r.body)["events"]]
    assert got == list(range(12, 20))
    with closing(CursorStore(ledger)) as cursors:
        row = cursors.get("hook")
    assert row is not None and (row.last_seq, row.delivered) == (19, 20)


def test_two_processes_forward_each_entry_once(make_ledger: LedgerFactory, tmp_path: Path) -> None:
    """Two server processes (two stores: two sessions) run the same forwarder: one at a time
    sends a batch, from the cursor the other acknowledged, so nothing is sent twice."""
    receiver = HttpReceiver(token="t", delay=0.02)
    stop = threading.Event()
    cfg = config(tmp_path, name="shared", type="splunk_hec", url=receiver.url, token="t",
                 batch_size=7, poll_interval=0.01)  # fmt: skip
    ledgers = [make_ledger(), make_ledger()]
    try:
        jobs = [start_forwarders(lg, [cfg], stop) for lg in ledgers]
        for i in range(10):
            ledgers[i % 2].append_many(events(25, start=25 * i))
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while len(hec_seqs(receiver.accepted)) < 250 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # anything sent twice would arrive by now
    finally:
        stop.set()
        for job in jobs:
            job.join(10)
        receiver.close()
    delivered = hec_seqs(receiver.accepted)
    assert sorted(delivered) == list(range(250))  # each exactly once
    with closing(CursorStore(ledgers[0])) as cursors:
        row = cursors.get("shared")
    assert row is not None and (row.last_seq, row.delivered) == (249, 250)
