"""Audit search on a real SQLite ledger: every filter, stable cursors, full text with
snippets, and erased content that never comes back.

The tests that take the ``ledger`` fixture hold for every backend: tests/postgres/
test_pg_audit_search.py runs them again on PostgreSQL (its ``make_ledger`` opens the ledger
there). What only SQLite has (FTS5 segments, its read connection) is tested separately."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from chatledger.audit.search import Filters, query_ref, record_access, search
from chatledger.audit.textindex import index_for, to_fts_query
from chatledger.errors import InvalidInput
from chatledger.events import Actor, Entity, Event
from chatledger.ledger.service import Ledger


def message(i: int, text: str, *, subject: str | None = None, conv: str = "c1") -> Event:
    return Event(
        "message.user",
        Actor("anonymous", f"visitor-{i % 3}"),
        Entity("message", f"m{i}"),
        subject=subject,
        attributes={"chatbot_id": "bot-1", "conversation_id": conv},
        payload={"text": text},
    )


def mixed(n: int) -> list[Event]:
    events: list[Event] = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            events.append(message(i, f"hello number {i}", conv=f"c{i % 4}"))
        elif kind == 1:
            events.append(
                Event(
                    "message.answer",
                    Actor("system", "chatledger"),
                    Entity("message", f"a{i}"),
                    attributes={
                        "chatbot_id": "bot-2",
                        "conversation_id": f"c{i % 4}",
                        "gen_ai.request.model": "offline-1",
                    },
                    payload={"text": f"answer {i}"},
                )
            )
        elif kind == 2:
            events.append(
                Event(
                    "guard.anomaly",
                    Actor("user", f"u{i % 2}", "admin" if i % 2 else "editor"),
                    Entity("anomaly", f"an{i}"),
                    "flagged",
                    attributes={"severity": "high" if i % 4 == 2 else "low"},
                )
            )
        elif kind == 3:
            events.append(
                Event(
                    "auth.login_failed",
                    Actor("anonymous", "10.0.0.1"),
                    Entity("http_request", "POST /api/v1/auth/login"),
                    "denied",
                )
            )
        else:
            events.append(
                Event(
                    "document.upload",
                    Actor("user", "u1", "admin"),
                    Entity("document", f"d{i}"),
                    attributes={"chatbot_id": "bot-1"},
                )
            )
    return events


def seqs(page: Any) -> list[int]:
    return [item.seq for item in page.items]


def all_pages(ledger: Ledger, filters: Filters, **kw: Any) -> list[int]:
    out: list[int] = []
    cursor = None
    while True:
        page = search(ledger, filters, cursor=cursor, **kw)
        out += seqs(page)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def test_filters_match_a_plain_scan(ledger: Ledger) -> None:
    ledger.append_many(mixed(200))
    ledger.append_many(  # free-form actions, which only the index knows
        Event(f"custom.{name}", Actor("system", "crm"), Entity("ticket", f"t{i}"))
        for i, name in enumerate(["refund_issued", "zeta", "refund_issued"])
    )
    bodies = [e.to_json() for e in ledger.entries(0, ledger.size())]

    def expect(pred: Any) -> list[int]:
        return sorted((b["seq"] for b in bodies if pred(b)), reverse=True)

    cases: list[tuple[dict[str, str], Any]] = [
        ({"actor": "u1"}, lambda b: b["actor"]["id"] == "u1"),
        ({"action": "guard.*"}, lambda b: b["action"].startswith("guard.")),
        ({"action": "message.user,auth.login_failed"}, lambda b: b["action"] in ("message.user", "auth.login_failed")),  # noqa: E501
        ({"category": "security", "outcome": "denied"}, lambda b: b["category"] == "security" and b["outcome"] == "denied"),  # noqa: E501
        ({"outcome": "success"}, lambda b: b["outcome"] == "success"),
        ({"entity_type": "document"}, lambda b: b["entity"]["type"] == "document"),
        ({"entity_id": "d4"}, lambda b: b["entity"]["id"] == "d4"),
        ({"chatbot_id": "bot-2"}, lambda b: b["attributes"].get("chatbot_id") == "bot-2"),
        ({"conversation_id": "c3"}, lambda b: b["attributes"].get("conversation_id") == "c3"),
        ({"role": "admin"}, lambda b: b["actor"].get("role") == "admin"),
        ({"severity": "high"}, lambda b: b["attributes"].get("severity") == "high"),
        ({"role": "editor", "severity": "low"}, lambda b: b["actor"].get("role") == "editor" and b["attributes"].get("severity") == "low"),  # noqa: E501
        ({"action": "nothing.*"}, lambda b: False),
        ({"action": "custom.*"}, lambda b: b["action"].startswith("custom.")),
        ({"action": "custom.refund*"}, lambda b: b["action"] == "custom.refund_issued"),
        ({"action": "c*"}, lambda b: b["action"].startswith("c")),
        ({"action": "cu*,gu*"}, lambda b: b["action"][:2] in ("cu", "gu")),
        ({"category": "custom"}, lambda b: b["category"] == "custom"),
    ]  # fmt: skip
    for raw, pred in cases:
        filters = Filters.parse(**raw)  # type: ignore[arg-type]
        assert all_pages(ledger, filters, limit=7) == expect(pred), raw
        oldest = all_pages(ledger, filters, limit=9, order="oldest")
        assert oldest == sorted(expect(pred)), raw


def test_role_and_severity_are_exact_before_the_index_catches_up(ledger: Ledger) -> None:
    ledger.append_many(mixed(50))
    index_for(ledger).catch_up()
    ledger.append_many(mixed(50))  # not indexed: read from the entries themselves
    assert index_for(ledger).state().indexed_through == 50
    bodies = [e.to_json() for e in ledger.entries(0, ledger.size())]
    expected = sorted(
        (b["seq"] for b in bodies if b["attributes"].get("severity") == "high"), reverse=True
    )
    assert all_pages(ledger, Filters.parse(severity="high"), limit=3) == expected
    assert any(s >= 50 for s in expected)


def test_time_range(ledger: Ledger) -> None:
    ledger.append_many(mixed(10))
    mid = ledger.entry(5).ts
    ledger.append_many(mixed(10))
    later = [s for s in range(ledger.size()) if ledger.entry(s).ts >= mid]
    page = search(ledger, Filters.parse(start=mid), limit=200, order="oldest")
    assert seqs(page) == later
    page = search(ledger, Filters.parse(end=mid), limit=200, order="oldest")
    assert seqs(page) == [s for s in range(ledger.size()) if s not in later]
    assert seqs(search(ledger, Filters.parse(start="2000-01-01", end="2000-01-02"))) == []


def test_cursor_pages_are_stable_while_the_ledger_grows(ledger: Ledger) -> None:
    ledger.append_many(mixed(60))
    filters = Filters.parse(category="message")
    first = search(ledger, filters, limit=10)
    ledger.append_many(mixed(30))  # newer entries do not shift the next page
    second = search(ledger, filters, limit=10, cursor=first.next_cursor)
    assert first.next_cursor is not None
    assert max(seqs(second)) < min(seqs(first))
    assert seqs(second)[0] == max(s for s in range(60) if s < min(seqs(first)) and s % 5 in (0, 1))


def test_items_carry_the_entry_and_payload_status_never_the_payload(ledger: Ledger) -> None:
    ledger.append(message(1, "secret words here", subject="visitor-9"))
    page = search(ledger, Filters.parse(action="message.user"))
    item = page.items[0].to_json()
    assert item["payload_status"] == "present"
    assert item["entry"]["action"] == "message.user"
    assert "payload" not in item and "secret" not in str(item)


def test_full_text_snippet_and_erasure(ledger: Ledger) -> None:
    ledger.append(message(1, "My order 77 never arrived, I want a refund", subject="alice"))
    ledger.append(message(2, "Where is the refund policy?", subject="bob"))
    ledger.append(message(3, "unrelated question", subject="carol"))
    page = search(ledger, Filters.parse(q="refund"))
    assert len(page.items) == 2
    match = page.items[1].match
    assert match is not None
    assert [match.snippet[a:b] for a, b in match.highlights] == ["refund"]
    assert "77" in match.snippet
    assert page.text_index is not None and page.text_index.complete
    assert seqs(search(ledger, Filters.parse(q='"refund policy"'))) == [1]
    assert seqs(search(ledger, Filters.parse(q="refu*"))) == [1, 0]

    ledger.erase_subject("alice", Actor("user", "dpo", "operator"))
    after = search(ledger, Filters.parse(q="refund"))
    assert seqs(after) == [1]
    assert seqs(search(ledger, Filters.parse(q="arrived"))) == []
    # the text left the index (compaction then purges it from the index data)
    index = index_for(ledger)
    assert index.indexed_text([0, 1]) == {1}
    assert index.compact()
    # the entry itself is still found, marked as erased
    erased = search(ledger, Filters.parse(action="message.user"))
    statuses = {i.seq: i.payload_status for i in erased.items}
    assert statuses[0] == "erased" and statuses[1] == "present"
    assert erased.items[-1].erasure_seq == 3


def test_a_search_never_returns_erased_text_even_before_the_sweep(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.append(message(1, "zanzibar is where I live", subject="dave"))
    assert seqs(search(ledger, Filters.parse(q="zanzibar"))) == [0]
    index = index_for(ledger)
    monkeypatch.setattr(index, "erasures_pending", lambda: False)
    monkeypatch.setattr(index, "catch_up", lambda **kw: 0)
    ledger.erase_subject("dave", Actor("user", "dpo", "operator"))
    # the index still holds the row (no sweep ran), but the search checks the payload
    assert index.indexed_text([0]) == {0}
    assert search(ledger, Filters.parse(q="zanzibar")).items == []
    assert index.indexed_text([0]) == set()


def test_search_is_recorded_with_its_query_pseudonymised(ledger: Ledger) -> None:
    """The text searched for may name a person whom no erasure could find it under: the
    entry keeps a keyed pseudonym of it (equal texts, equal pseudonyms), never the text."""
    ledger.append(message(1, "hello"))
    filters = Filters.parse(q="hello", category="message")
    auditor = Actor("user", "auditor-1", "auditor")
    receipt = record_access(ledger, auditor, "audit.search", filters, {"results": 1})
    record = ledger.read(receipt.seq)
    assert record.entry.action == "audit.search"
    assert record.entry.actor == {"type": "user", "id": "auditor-1", "role": "auditor"}
    assert record.entry.attributes["filters"] == {"category": "message"}
    assert record.entry.attributes["has_q"] is True
    assert "hello" not in record.entry.body.decode()
    assert record.payload is None
    assert record.entry.attributes["q_ref"] == query_ref(ledger, "hello")
    assert record.entry.attributes["q_ref"] != query_ref(ledger, "hello!")
    assert record.entry.attributes["q_length"] == 5


@pytest.mark.parametrize(
    ("raw", "kw"),
    [
        ({"start": "yesterday"}, {}),
        ({"start": "2026-02-01", "end": "2026-01-01"}, {}),
        ({"action": "Bad Action"}, {}),
        ({"action": "*"}, {}),
        ({"category": "nope"}, {}),
        ({"outcome": "maybe"}, {}),
        ({"q": "   ***   "}, {}),
        ({}, {"limit": 201}),
        ({}, {"limit": 0}),
        ({}, {"order": "random"}),
        ({}, {"cursor": "abc"}),
    ],
)
def test_bad_input_is_refused(ledger: Ledger, raw: dict[str, str], kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        search(ledger, Filters.parse(**raw), **kw)  # type: ignore[arg-type]


def test_user_text_is_never_fts_syntax() -> None:
    assert to_fts_query('refund OR "x" NEAR(a b) col:foo') == (
        '"refund" "OR" "x" "NEAR a" "b" "col foo"'
    )
    assert to_fts_query("héllo* wörld") == '"héllo"* "wörld"'


def test_index_follows_another_process_writing(ledger: Ledger, make_ledger: Any) -> None:
    ledger.append_many([message(i, f"first batch {i}") for i in range(5)])
    assert len(search(ledger, Filters.parse(q="batch")).items) == 5
    other = make_ledger()
    other.append_many([message(i, f"second batch {i}") for i in range(5)])
    assert len(search(ledger, Filters.parse(q="second")).items) == 5


@pytest.mark.sqlite_only(reason="FTS5 segments; PostgreSQL: tests/postgres/test_pg_audit_search.py")
def test_compaction_purges_erased_tokens_from_the_fts5_segments(ledger: Ledger) -> None:
    ledger.append(message(1, "My order 77 never arrived, I want a refund", subject="alice"))
    ledger.append(message(2, "Where is the refund policy?", subject="bob"))
    assert len(search(ledger, Filters.parse(q="refund")).items) == 2
    ledger.erase_subject("alice", Actor("user", "dpo", "operator"))
    assert seqs(search(ledger, Filters.parse(q="refund"))) == [1]
    conn = ledger.store.read_connection()
    assert isinstance(conn, sqlite3.Connection)
    assert conn.execute("SELECT count(*) FROM audit_text WHERE rowid = 0").fetchone()[0] == 0
    assert index_for(ledger).compact()
    blob = b"".join(bytes(r[0]) for r in conn.execute("SELECT block FROM audit_text_data"))
    assert b"arrived" not in blob and b"refund" in blob


def test_snippets_fold_case_and_accents_and_stay_short() -> None:
    from chatledger.audit.textindex import make_snippet, query_terms

    text = " ".join(f"word{i}" for i in range(200)) + " Crème BRÛLÉE recipe " + "tail " * 50
    match = make_snippet(text, query_terms("creme brul*"))
    assert match.snippet.startswith("…") and match.snippet.endswith("…")
    assert [match.snippet[a:b] for a, b in match.highlights] == ["Crème", "BRÛLÉE"]
    assert len(match.snippet.split()) <= 25
    short = make_snippet("Refund please", query_terms("refund"))
    assert short.snippet == "Refund please" and short.highlights == [(0, 6)]
