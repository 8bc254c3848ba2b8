"""One idempotency key twice in one ingest batch: a byte-identical repeat is a duplicate,
a different record is an ``idempotency_conflict`` (as it is when sent in a later batch)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integrations.server import Server


def _record(server: Server, key: str, conversation: str, n: int) -> dict[str, Any]:
    return {
        "key": key,
        "type": "custom.app_event",
        "chatbot_id": server.chatbot_id,
        "conversation_id": conversation,
        "occurred_at": "2026-01-02T03:04:05Z",
        "data": {"attributes": {"n": n}},
    }


def _ingest(server: Server, records: list[dict[str, Any]]) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/api/v1/ingest/events",
        json={"records": records},
        headers={"authorization": f"Bearer {server.ingest_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_different_record_under_a_key_seen_earlier_in_the_batch_conflicts(
    server: Server,
) -> None:
    start = server.platform.ledger.size()
    first = _record(server, "batch-conflict-1", "batch-conv-1", 1)
    other = _record(server, "batch-conflict-1", "batch-conv-1", 2)
    body = _ingest(server, [first, other])
    statuses = [(r["status"], r.get("error", {}).get("code")) for r in body["results"]]
    assert statuses == [("created", None), ("rejected", "idempotency_conflict")], body
    assert (body["created"], body["duplicates"], body["rejected"]) == (1, 0, 1)
    refusals = [r for r in server.records(start) if r.entry.action == "request.rejected"]
    assert len(refusals) == 1
    assert [e["code"] for e in refusals[0].entry.attributes["errors"]] == ["idempotency_conflict"]
    # the same answer as sending the conflicting record alone afterwards
    alone = _ingest(server, [other])
    assert alone["results"][0]["status"] == "rejected"
    assert alone["results"][0]["error"]["code"] == "idempotency_conflict"
    assert server.platform.ledger.verify().ok


def test_an_identical_repeat_in_the_batch_is_a_duplicate(server: Server) -> None:
    start = server.platform.ledger.size()
    record = _record(server, "batch-repeat-1", "batch-conv-2", 1)
    body = _ingest(server, [record, dict(record)])
    first, second = body["results"]
    assert first["status"] == "created" and second["status"] == "duplicate", body
    assert second["seq"] == first["seq"]
    assert (body["created"], body["duplicates"], body["rejected"]) == (1, 1, 0)
    assert "request.rejected" not in server.actions(start)
