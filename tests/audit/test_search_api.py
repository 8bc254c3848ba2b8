"""``GET /api/v1/audit/events`` and ``GET /api/v1/audit/export`` against a real server on
loopback: permissions, filters, cursors, streamed exports, and the access events they leave."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatledger.events import Actor, Entity, Event
from tests.api.server import LiveServer, live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("audit-api") / "data") as live:
        events = []
        for i in range(30):
            events.append(
                Event(
                    "message.user",
                    Actor("anonymous", f"visitor-{i % 3}"),
                    Entity("message", f"m{i}"),
                    subject=f"visitor-{i % 3}",
                    attributes={"chatbot_id": "bot-a", "conversation_id": f"conv-{i % 2}"},
                    payload={"text": f"question {i} about the cancellation fee"},
                )
            )
            if i % 10 == 0:
                events.append(
                    Event(
                        "guard.injection_detected",
                        Actor("anonymous", f"visitor-{i % 3}"),
                        Entity("message", f"m{i}"),
                        "blocked",
                        attributes={"detector": "heuristic", "score": 0.93, "severity": "high"},
                    )
                )
        live.platform.ledger.append_many(events)
        yield live


def events_of(server: LiveServer, action: str) -> list[dict[str, object]]:
    ledger = server.platform.ledger
    return [e.to_json() for e in ledger.entries(0, ledger.size()) if e.action == action]


def test_search_filters_cursor_and_access_event(server: LiveServer) -> None:
    key = server.key("auditor")
    with server.client(key) as api:
        r = api.get("/audit/events", params={"action": "message.user", "limit": 4})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) == 4 and body["next_cursor"]
        first = [i["seq"] for i in body["items"]]
        assert first == sorted(first, reverse=True)
        r = api.get(
            "/audit/events",
            params={"action": "message.user", "limit": 4, "cursor": body["next_cursor"]},
        )
        second = [i["seq"] for i in r.json()["items"]]
        assert max(second) < min(first)

        r = api.get("/audit/events", params={"q": "cancellation", "conversation_id": "conv-1"})
        items = r.json()["items"]
        assert len(items) == 15
        assert all("payload" not in i for i in items)
        snippet = items[0]["match"]
        assert [snippet["snippet"][a:b] for a, b in snippet["highlights"]] == ["cancellation"]

        r = api.get("/audit/events", params={"severity": "high", "action": "guard.*"})
        assert [i["entry"]["outcome"] for i in r.json()["items"]] == ["blocked"] * 3

        r = api.get("/audit/events", params={"from": "2000-01-01T00:00:00Z", "to": "2000-01-02"})
        assert r.json() == {"items": [], "next_cursor": None, "order": "newest"}

    recorded = [e for e in events_of(server, "audit.search") if e["actor"]["id"] != "system"]  # type: ignore[index]
    mine = [e for e in recorded if e["attributes"]["filters"].get("conversation_id") == "conv-1"]  # type: ignore[index,union-attr]
    assert len(mine) == 1
    assert mine[0]["attributes"]["has_q"] is True  # type: ignore[index]
    assert mine[0]["attributes"]["results"] == 15  # type: ignore[index]
    assert "cancellation" not in json.dumps(mine[0])  # the query is in the erasable payload


def test_permissions_and_error_shape(server: LiveServer) -> None:
    with server.client(server.key("viewer")) as api:
        r = api.get("/audit/events")
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"
        assert api.get("/audit/export").status_code == 403
    with server.client(server.key("agent")) as api:
        assert api.get("/audit/export").status_code == 403
    denied = events_of(server, "access.denied")
    assert any(e["attributes"].get("permission") == "audit.read" for e in denied)  # type: ignore[union-attr]
    with server.client(server.key("auditor")) as api:
        r = api.get("/audit/events", params={"limit": 500})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
        r = api.get("/audit/events", params={"from": "last tuesday"})
        assert r.status_code == 422 and "from" in r.json()["error"]["message"]
        r = api.get("/audit/export", params={"format": "xml"})
        assert r.status_code == 422 and "jsonl" in r.json()["error"]["message"]


def test_streamed_exports(server: LiveServer, tmp_path: Path) -> None:
    with server.client(server.key("auditor")) as api:
        with api.stream("GET", "/audit/export", params={"format": "jsonl"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/x-ndjson")
            assert "attachment" in r.headers["content-disposition"]
            upto = int(r.headers["x-chatledger-upto-seq"])
            lines = [json.loads(line) for line in r.iter_lines() if line]
        assert [line["seq"] for line in lines] == list(range(upto + 1))
        assert {line["payload_status"] for line in lines} >= {"present", "none"}

        r = api.get("/audit/export", params={"format": "ocsf", "action": "guard.*"})
        ocsf = [json.loads(line) for line in r.text.splitlines()]
        assert len(ocsf) == 3 and {e["class_uid"] for e in ocsf} == {2004}

        r = api.get("/audit/export", params={"format": "csv", "category": "message"})
        rows = r.text.split("\r\n")
        assert rows[0].startswith("seq,ts,id,category,action")
        assert len([row for row in rows[1:] if row]) == 30

        r = api.get("/audit/export", params={"format": "cef", "severity": "high"})
        assert r.text.count("CEF:0|ChatLedger|ChatLedger|") == 3

    exports = events_of(server, "audit.export")
    formats = [e["attributes"]["format"] for e in exports]  # type: ignore[index]
    assert formats[-4:] == ["jsonl", "ocsf", "csv", "cef"]
    assert exports[-1]["attributes"]["filters"] == {"severity": "high"}  # type: ignore[index]
