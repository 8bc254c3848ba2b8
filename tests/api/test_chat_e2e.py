"""End to end over real HTTP: build a chatbot, use it, and rebuild from the ledger alone every
field that DESIGN.md "What is recorded" lists for conversations, messages, documents and
configuration."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

import httpx

from chatledger.ledger.service import Record
from tests.api.server import LiveServer, sse_events

FORMATS = {
    "markdown": "two-factor-authentication.md",
    "text": "password-reset.txt",
    "html": "account-security.html",
    "docx": "billing-and-invoices.docx",
    "pdf": "refund-policy.pdf",
}


def demo_file(name: str) -> bytes:
    return (resources.files("chatledger") / "demo_data" / name).read_bytes()


def ledger_records(server: LiveServer) -> list[Record]:
    ledger = server.platform.ledger
    return list(ledger.records(0, ledger.size()))


def by_action(records: list[Record], action: str, **attrs: Any) -> list[Record]:
    return [
        r
        for r in records
        if r.entry.action == action
        and all(r.entry.attributes.get(k) == v for k, v in attrs.items())
    ]


def test_everything_recorded_is_rebuilt_from_the_ledger(
    server: LiveServer, api: httpx.Client
) -> None:
    # -- a chatbot, documents in every format ------------------------------------------------
    bot = api.post("/chatbots", json={"name": "Support", "system_prompt": "Be brief."}).json()
    bot_id = bot["id"]
    uploaded = {}
    for fmt, name in FORMATS.items():
        response = api.post(
            f"/chatbots/{bot_id}/documents", files={"file": (name, demo_file(name))}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["version"] == 1 and body["chunks"] > 0 and body["format"] == fmt
        uploaded[name] = body
    # a new version of one document
    new_text = demo_file(FORMATS["text"]) + b"\n\nReset links now expire after 30 minutes.\n"
    v2 = api.post(
        f"/chatbots/{bot_id}/documents", files={"file": (FORMATS["text"], new_text)}
    ).json()
    assert v2["version"] == 2 and v2["id"] == uploaded[FORMATS["text"]]["id"]
    # -- configuration change ---------------------------------------------------------------
    changed = api.patch(
        f"/chatbots/{bot_id}",
        json={"system_prompt": "Be brief and kind.", "retrieval": {"top_k": 3}},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["config_version"] == 2
    # -- a conversation ---------------------------------------------------------------------
    conv = api.post(
        f"/chatbots/{bot_id}/conversations",
        json={"visitor_id": "visitor-42", "channel": "web"},
        headers={"user-agent": "e2e-browser/1.0"},
    ).json()
    conv_id = conv["id"]
    attachment = {
        "name": "screenshot.png",
        "type": "image/png",
        "size": 2048,
        "sha256": hashlib.sha256(b"png").hexdigest(),
    }
    turn = api.post(
        f"/conversations/{conv_id}/messages",
        json={"text": "How do I turn on two-factor authentication?", "attachments": [attachment]},
    )
    assert turn.status_code == 200, turn.text
    answer = turn.json()["answer"]
    assert answer["text"] and answer["sources"]
    assert {"input_tokens", "output_tokens"} <= set(answer["usage"])
    assert all(
        {"document_id", "document_version", "chunk_id", "score", "text"} <= set(s)
        for s in answer["sources"]
    )
    unanswered = api.post(
        f"/conversations/{conv_id}/messages",
        json={"text": "What is the airspeed velocity of an unladen swallow?"},
    ).json()
    assert unanswered["answer"]["unanswered"] is True
    fb = api.post(
        f"/messages/{answer['id']}/feedback", json={"rating": "negative", "comment": "too vague"}
    )
    assert fb.status_code == 201, fb.text
    patched = api.patch(
        f"/conversations/{conv_id}",
        json={"resolution": "escalated", "outcome_tags": ["lead_capture", "vip"]},
    )
    assert patched.status_code == 200, patched.text
    ended = api.patch(f"/conversations/{conv_id}", json={"resolution": "resolved", "ended": True})
    assert ended.json()["ended_at"]
    # -- delete a document ------------------------------------------------------------------
    doomed = uploaded[FORMATS["html"]]
    assert api.delete(f"/documents/{doomed['id']}").status_code == 204
    listed = api.get(f"/chatbots/{bot_id}/documents").json()["items"]
    assert doomed["id"] not in {d["id"] for d in listed}

    # == rebuild from the ledger alone ======================================================
    records = ledger_records(server)
    admin_key_id = server.admin_key.split("_")[1]

    # configuration: who changed what, before and after
    (create,) = by_action(records, "chatbot.create", chatbot_id=bot_id)
    assert create.payload is not None and create.payload["after"]["system_prompt"] == "Be brief."
    (update,) = by_action(records, "chatbot.update", chatbot_id=bot_id)
    assert update.entry.actor["id"] == admin_key_id
    assert update.payload is not None
    assert update.payload["before"]["system_prompt"] == "Be brief."
    assert update.payload["after"]["system_prompt"] == "Be brief and kind."
    assert update.payload["before"]["retrieval"]["top_k"] == 4
    assert update.payload["after"]["retrieval"]["top_k"] == 3
    assert set(update.entry.attributes["changed"]) == {"system_prompt", "retrieval.top_k"}

    # documents: who, what (name, size, content hash), when, what was removed
    for name, body in uploaded.items():
        (event,) = by_action(records, "document.upload", document_id=body["id"])
        attrs = event.entry.attributes
        assert attrs["name"] == name and attrs["size"] == len(demo_file(name))
        assert attrs["sha256"] == hashlib.sha256(demo_file(name)).hexdigest()
        assert attrs["chunk_count"] == body["chunks"] and attrs["version"] == 1
        assert event.entry.actor["id"] == admin_key_id and event.entry.ts
    (version,) = by_action(records, "document.version", document_id=v2["id"])
    assert version.entry.attributes["version"] == 2
    assert version.entry.attributes["sha256"] == hashlib.sha256(new_text).hexdigest()
    assert version.entry.attributes["replaced"]["version"] == 1
    (deletion,) = by_action(records, "document.delete", document_id=doomed["id"])
    assert deletion.entry.attributes["name"] == FORMATS["html"]
    assert deletion.entry.attributes["chunk_count"] == doomed["chunks"]
    assert deletion.entry.attributes["sha256"] == doomed["sha256"]

    # conversation: start/end, visitor, channel, resolution with who and when, outcomes
    (start,) = by_action(records, "conversation.start", conversation_id=conv_id)
    assert start.payload is not None and start.payload["visitor_id"] == "visitor-42"
    assert start.payload["user_agent"] == "e2e-browser/1.0"
    assert start.entry.attributes["channel"] == "web"
    resolutions = by_action(records, "conversation.resolution", conversation_id=conv_id)
    assert [r.entry.attributes["resolution"] for r in resolutions] == ["escalated", "resolved"]
    assert all(r.entry.actor["id"] == admin_key_id and r.entry.ts for r in resolutions)
    (outcome,) = by_action(records, "conversation.outcome", conversation_id=conv_id)
    assert outcome.entry.attributes["tags"] == ["lead_capture", "vip"]
    assert outcome.entry.attributes["custom"] == ["vip"]
    (end,) = by_action(records, "conversation.end", conversation_id=conv_id)
    assert end.entry.ts >= start.entry.ts

    # messages: exact text, attachments, answer text, provider, model, tokens, latency,
    # finish reason, retrieved chunks with scores, document versions and hashes, feedback
    users = by_action(records, "message.user", conversation_id=conv_id)
    assert users[0].payload is not None
    assert users[0].payload["text"] == "How do I turn on two-factor authentication?"
    assert users[0].payload["attachments"] == [attachment]
    assert users[0].entry.attributes["attachments"][0]["sha256"] == attachment["sha256"]
    answers = by_action(records, "message.answer", conversation_id=conv_id)
    first = answers[0]
    attrs = first.entry.attributes
    assert first.payload is not None and first.payload["text"] == answer["text"]
    assert attrs["gen_ai.provider.name"] == "offline"
    assert attrs["gen_ai.response.model"] == answer["model"]
    assert attrs["gen_ai.usage.input_tokens"] == answer["usage"]["input_tokens"] > 0
    assert attrs["gen_ai.usage.output_tokens"] == answer["usage"]["output_tokens"] > 0
    assert attrs["usage_source"] == "estimated"
    assert attrs["latency_ms"] >= 0 and attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert 0 <= attrs["groundedness"] <= 1
    assert attrs["config_version"] == 2
    assert attrs["in_reply_to"] == turn.json()["message_id"]
    retrieved = attrs["retrieved"]
    assert retrieved and len(retrieved) <= 3  # top_k after the change
    for item, source in zip(retrieved, answer["sources"], strict=True):
        assert item["chunk_id"] == source["chunk_id"]
        assert item["document_version"] == source["document_version"]
        assert item["score"] == source["score"]
        assert item["chunk_sha256"] == hashlib.sha256(source["text"].encode()).hexdigest()
    assert any(item["cited"] for item in retrieved)
    (call,) = by_action(records, "model.call", message_id=answer["id"])
    assert call.payload is not None and call.payload["messages"][0]["role"] == "system"
    assert "Be brief and kind." in call.payload["messages"][0]["content"]
    assert by_action(records, "message.unanswered", conversation_id=conv_id)
    (feedback,) = by_action(records, "message.feedback", message_id=answer["id"])
    assert feedback.entry.attributes["rating"] == "negative"
    assert feedback.payload == {"comment": "too vague"} and feedback.entry.ts

    # == the replay endpoint says the same, sources as they were, after the deletion ========
    replay = api.get(f"/conversations/{conv_id}/replay").json()
    assert replay["participant"]["visitor_id"] == "visitor-42"
    assert replay["resolution"] == "resolved" and replay["outcome_tags"] == ["lead_capture", "vip"]
    assert replay["ended_at"] == end.entry.ts
    replayed = next(m for m in replay["messages"] if m["role"] == "assistant")
    assert replayed["text"] == answer["text"]
    assert [s["text"] for s in replayed["sources"]] == [s["text"] for s in answer["sources"]]
    assert all(s["document_name"] for s in replayed["sources"])
    assert replayed["feedback"][0]["comment"] == "too vague"
    assert replay["configuration"][-1]["config"]["system_prompt"] == "Be brief and kind."
    assert by_action(ledger_records(server), "conversation.view", conversation_id=conv_id)

    report = server.platform.ledger.verify()
    assert report.ok, json.dumps(report.to_json())[:2000]


def test_streaming_answer_over_sse(server: LiveServer, api: httpx.Client) -> None:
    bot = api.post("/chatbots", json={"name": "Stream"}).json()
    api.post(
        f"/chatbots/{bot['id']}/documents",
        files={"file": ("2fa.md", demo_file(FORMATS["markdown"]))},
    )
    conv = api.post(f"/chatbots/{bot['id']}/conversations", json={}).json()
    with api.stream(
        "POST",
        f"/conversations/{conv['id']}/messages",
        json={"text": "How do I set up two-factor authentication?", "stream": True},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    kinds = [k for k, _ in events]
    assert kinds[-1] == "answer" and "delta" in kinds
    final = events[-1][1]
    streamed = "".join(d["text"] for k, d in events if k == "delta")
    assert streamed == final["answer"]["text"]
    record = server.platform.ledger.read(final["seq"])
    assert record.payload is not None and record.payload["text"] == streamed
