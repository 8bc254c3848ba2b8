"""The SDK against a running server: every kind of record, the seqs it returns, replay, and
delivery when the server goes away (mid-batch, or after committing but before answering):
every acknowledged record is in the ledger exactly once."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatledger.client import (
    BufferFull,
    LedgerClient,
    Pending,
    RecordRejected,
    ledger_conversation_id,
    ledger_item_id,
)
from chatledger.ledger.service import Record
from tests.api.server import free_port
from tests.integrations.server import Server, start_server


def _client(server: Server, spool: Path | None = None, **kwargs: Any) -> LedgerClient:
    options: dict[str, Any] = {"flush_interval": 0.02, "backoff_initial": 0.05, "backoff_max": 0.3}
    options.update(kwargs)
    return LedgerClient(server.url, server.ingest_key, spool_dir=spool, **options)


def _read(server: Server, pending: Pending) -> Record:
    return server.platform.ledger.read(pending.result(timeout=30))


def _keys(server: Server) -> Counter[str]:
    return Counter(
        str(r.entry.attributes["ingest.key"])
        for r in server.records()
        if "ingest.key" in r.entry.attributes
    )


def test_a_whole_conversation_field_by_field(server: Server, tmp_path: Path) -> None:
    bot = server.chatbot_id
    with _client(server, tmp_path / "spool") as client:
        conv = client.conversation(
            bot, "ticket-1001", user_id="bob", channel="web", metadata={"plan": "pro"}
        )
        question = conv.user_message(
            "Can I get a refund?",
            attachments=[
                {
                    "name": "invoice.pdf",
                    "type": "application/pdf",
                    "size": 2048,
                    "sha256": "ab" * 32,
                }
            ],
        )
        chunks = [
            {
                "chunk_id": "c-7",
                "document_id": "refunds.pdf",
                "document_version": 3,
                "score": 0.87,
                "text": "Refunds are issued within 14 days.",
                "source": "s3://kb/refunds.pdf",
            },
            {"chunk_id": "c-9", "document_id": "faq.md", "score": 0.41, "sha256": "cd" * 32},
        ]
        retrieval = conv.retrieval(
            chunks, query="refund policy", message_id=question.message_id, data_source="kb", top_k=2
        )
        answer_id = "answer-1"
        call = conv.model_call(
            provider="openai",
            request_model="gpt-4o-mini",
            response_model="gpt-4o-mini-2024-07-18",
            input_tokens=812,
            output_tokens=31,
            latency_ms=640.25,
            finish_reason="stop",
            messages=[{"role": "user", "content": "Can I get a refund?"}],
            answer_id=answer_id,
        )
        answer = conv.answer(
            "Yes, within 14 days [1].",
            message_id=answer_id,
            in_reply_to=question.message_id,
            provider="openai",
            model="gpt-4o-mini-2024-07-18",
            input_tokens=812,
            output_tokens=31,
            latency_ms=640.25,
            finish_reason="stop",
            retrieval_id=retrieval.message_id,
            groundedness=0.93,
            cited=["c-7"],
        )
        feedback = conv.feedback(answer_id, "positive", "thanks!")
        resolved = conv.resolve("resolved", set_by="agent:jane", reason="answered")
        outcome = conv.outcome(["deflection", "upsell"])
        ended = conv.end()
        pendings = [
            conv.started,
            question,
            retrieval,
            call,
            answer,
            feedback,
            resolved,
            outcome,
            ended,
        ]
        seqs = [p.result(timeout=30) for p in pendings]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    ledger = server.platform.ledger
    cid = ledger_conversation_id(bot, "ticket-1001")
    assert conv.ledger_id == cid
    user_mid = ledger_item_id("msg", cid, question.message_id or "")
    answer_mid = ledger_item_id("ans", cid, answer_id)
    subject = ledger.subject_ref(f"ext:{server.workspace_id}:bob")

    start = ledger.read(seqs[0])
    assert start.entry.action == "conversation.start"
    assert start.entry.attributes["channel"] == "web"
    assert start.entry.attributes["identity"] == "user"
    assert start.entry.attributes["implicit"] is False
    assert start.payload == {
        "user_id": "bob",
        "visitor_id": None,
        "user_agent": None,
        "metadata": {"plan": "pro"},
    }

    user = ledger.read(seqs[1])
    assert user.entry.action == "message.user" and user.entry.entity == {
        "type": "message",
        "id": user_mid,
    }
    assert user.entry.attributes["attachments"] == [
        {"type": "application/pdf", "size": 2048, "sha256": "ab" * 32}
    ]
    assert user.payload is not None and user.payload["text"] == "Can I get a refund?"
    assert user.payload["attachments"][0]["name"] == "invoice.pdf"

    found = ledger.read(seqs[2])
    a = found.entry.attributes
    assert found.entry.action == "message.retrieval"
    assert a["message_id"] == user_mid
    assert a["gen_ai.data_source.id"] == "kb" and a["gen_ai.retrieval.top_k"] == 2
    first, second = a["retrieved"]
    assert first == {
        "rank": 1,
        "chunk_id": "c-7",
        "document_id": "refunds.pdf",
        "document_version": 3,
        "source": "s3://kb/refunds.pdf",
        "score": 0.87,
        "length": 34,
        "chunk_sha256": hashlib.sha256(b"Refunds are issued within 14 days.").hexdigest(),
    }
    assert second["chunk_sha256"] == "cd" * 32 and "length" not in second
    assert found.payload == {
        "query": "refund policy",
        "chunks": [{"rank": 1, "text": "Refunds are issued within 14 days.", "metadata": None}],
    }

    model = ledger.read(seqs[3])
    a = model.entry.attributes
    assert model.entry.action == "model.call" and model.entry.outcome == "success"
    assert a["message_id"] == answer_mid
    assert (a["gen_ai.provider.name"], a["gen_ai.request.model"], a["gen_ai.response.model"]) == (
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
    )
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (812, 31)
    assert a["latency_ms"] == 640.25 and a["gen_ai.response.finish_reasons"] == ["stop"]
    assert model.payload == {"messages": [{"role": "user", "content": "Can I get a refund?"}]}

    said = ledger.read(seqs[4])
    a = said.entry.attributes
    assert said.entry.action == "message.answer"
    assert said.payload == {"text": "Yes, within 14 days [1]."}
    assert a["message_id"] == answer_mid and a["in_reply_to"] == user_mid
    assert a["groundedness"] == 0.93 and a["groundedness_method"] == "reported"
    assert a["cited"] == ["c-7"]
    assert a["retrieval_id"] == found.entry.attributes["retrieval_id"]

    rated = ledger.read(seqs[5])
    assert rated.entry.attributes["rating"] == "positive"
    assert rated.entry.attributes["message_id"] == answer_mid
    assert rated.payload == {"comment": "thanks!"}
    assert ledger.read(seqs[6]).entry.attributes["resolution"] == "resolved"
    assert ledger.read(seqs[6]).entry.attributes["set_by"] == "agent:jane"
    assert ledger.read(seqs[7]).entry.attributes["tags"] == ["deflection", "upsell"]
    assert ledger.read(seqs[7]).entry.attributes["custom"] == ["upsell"]
    assert ledger.read(seqs[8]).entry.action == "conversation.end"
    for seq in seqs:
        entry = ledger.entry(seq)
        assert entry.subject == subject
        assert entry.attributes["chatbot_id"] == bot and entry.attributes["conversation_id"] == cid
        assert entry.attributes["gen_ai.conversation.id"] == "ticket-1001"
        assert entry.actor["type"] == "api_key"

    # the same conversation through the API, as an auditor sees a native one
    admin = server.key("admin")
    with httpx.Client(
        base_url=f"{server.url}/api/v1", headers={"authorization": f"Bearer {admin}"}
    ) as api:
        replay = api.get(f"/conversations/{cid}/replay").json()
        state = api.get(f"/conversations/{cid}").json()
    assert [m["role"] for m in replay["messages"]] == ["user", "assistant"]
    assert replay["messages"][1]["model_call"]["seq"] == seqs[3]
    assert replay["messages"][1]["feedback"][0]["rating"] == "positive"
    assert replay["resolution"] == "resolved" and replay["outcome_tags"] == ["deflection", "upsell"]
    assert replay["ended_at"] is not None
    assert state["resolution"] == "resolved" and state["ended_at"] is not None
    assert state["outcome_tags"] == ["deflection", "upsell"]


def test_records_the_server_refuses_fail_their_handles(server: Server) -> None:
    start = server.platform.ledger.size()
    with _client(server) as client:
        unknown = client.user_message("bot_nope", "c-1", "hello")
        with pytest.raises(RecordRejected, match="not_found"):
            unknown.result(timeout=30)
        first = client.record(
            "custom.app_event", server.chatbot_id, "c-2", {"attributes": {"n": 1}}, key="fixed-key"
        )
        assert first.result(timeout=30) > 0
        again = client.record(
            "custom.app_event", server.chatbot_id, "c-2", {"attributes": {"n": 2}}, key="fixed-key"
        )
        with pytest.raises(RecordRejected, match="idempotency_conflict"):
            again.result(timeout=30)
        assert [code for _, code, _ in client.rejected()] == ["not_found", "idempotency_conflict"]
        with pytest.raises(ValueError, match="rating"):
            client.feedback(server.chatbot_id, "c-2", "a-1", "meh")
    refusals = [r for r in server.records(start) if r.entry.action == "request.rejected"]
    assert [r.entry.attributes["errors"][0]["code"] for r in refusals] == [
        "not_found",
        "idempotency_conflict",
    ]


def test_server_goes_away_mid_batch_and_comes_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    server = start_server(data, port=port)
    chatbot, key = server.chatbot_id, server.ingest_key
    client = LedgerClient(
        server.url,
        key,
        spool_dir=tmp_path / "spool",
        batch_size=50,
        flush_interval=0.01,
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    pendings: list[Pending] = []
    stopper = threading.Thread(target=server.stop)
    try:
        for i in range(300):
            pendings.append(client.user_message(chatbot, f"conv-{i % 7}", f"message {i}"))
            if i == 150:
                stopper.start()  # the server stops while batches are in flight
        stopper.join()
        for i in range(300, 400):  # recording goes on while it is down
            pendings.append(client.user_message(chatbot, f"conv-{i % 7}", f"message {i}"))
        assert client.buffered > 0
        server = start_server(data, port=port)  # same data dir, same port
        client.flush(timeout=60)
        seqs = [p.result(timeout=5) for p in pendings]
        keys = _keys(server)
        assert len(seqs) == len(set(seqs)) == 400
        for pending, seq in zip(pendings, seqs, strict=True):
            assert keys[pending.key] == 1  # exactly once
            entry = server.platform.ledger.entry(seq)
            assert entry.attributes["ingest.key"] == pending.key
        texts = [server.platform.ledger.read(s).payload["text"] for s in seqs]  # type: ignore[index]
        assert texts == [f"message {i}" for i in range(400)]
        assert server.platform.ledger.verify().ok
    finally:
        client.close(flush=False)
        if stopper.is_alive():
            stopper.join()
        server.stop()


class _LoseFirstAnswers(httpx.HTTPTransport):
    """Forwards each request; for the first ``n`` the server commits but the answer is lost."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.posts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.posts += 1
        if self.posts <= self.n:
            response.read()
            response.close()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


def test_batch_retried_after_a_timeout_is_stored_once(server: Server) -> None:
    transport = _LoseFirstAnswers(2)
    with _client(server, transport=transport, batch_size=1000) as client:
        pendings = [
            client.user_message(server.chatbot_id, "retry-conv", f"m{i}") for i in range(40)
        ]
        client.flush(timeout=30)
        seqs = [p.result(timeout=5) for p in pendings]
    assert transport.posts >= 3
    keys = _keys(server)
    assert all(keys[p.key] == 1 for p in pendings)
    assert len(set(seqs)) == 40


def test_buffer_survives_a_restart_of_the_application(server: Server, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    first = LedgerClient(down, server.ingest_key, spool_dir=spool, backoff_initial=0.05)
    pendings = [first.user_message(server.chatbot_id, "restart-conv", f"m{i}") for i in range(20)]
    first.close(flush=False)  # the application stops with everything still buffered
    assert not any(p.done() for p in pendings)
    with _client(server, spool) as second:
        assert second.buffered == 20
        second.flush(timeout=30)
        assert second.buffered == 0
        seqs = [second.seq_of(p.key) for p in pendings]
    assert None not in seqs and len(set(seqs)) == 20
    keys = _keys(server)
    assert all(keys[p.key] == 1 for p in pendings)


def test_a_full_buffer_raises_and_loses_nothing(server: Server, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    client = LedgerClient(
        down,
        server.ingest_key,
        spool_dir=tmp_path / "s",
        max_buffer_records=5,
        backoff_initial=0.05,
    )
    try:
        for i in range(5):
            client.user_message(server.chatbot_id, "full-conv", f"m{i}")
        with pytest.raises(BufferFull, match="buffer is full") as caught:
            client.user_message(server.chatbot_id, "full-conv", "one too many")
        assert caught.value.limit_records == 5
        assert client.buffered == 5
    finally:
        client.close(flush=False)
    with _client(server, tmp_path / "s") as again:
        again.flush(timeout=30)
    texts = [
        r.payload["text"]
        for r in server.records()
        if r.entry.action == "message.user"
        and r.entry.attributes.get("gen_ai.conversation.id") == "full-conv"
        and r.payload
    ]
    assert texts == [f"m{i}" for i in range(5)]


def test_buffer_max_bytes_and_records_count(server: Server) -> None:
    client = LedgerClient(
        f"http://127.0.0.1:{free_port()}", server.ingest_key, max_buffer_bytes=2000
    )
    try:
        client.user_message(server.chatbot_id, "b", "x" * 500)
        with pytest.raises(BufferFull):
            client.user_message(server.chatbot_id, "b", "x" * 2000)
    finally:
        client.close(flush=False)


def test_the_ingest_endpoint_refuses_bad_bodies_and_roles(server: Server) -> None:
    url = f"{server.url}/api/v1/ingest/events"
    start = server.platform.ledger.size()
    agent = {"authorization": f"Bearer {server.ingest_key}"}
    not_json = httpx.post(url, content=b"{oops", headers=agent)
    assert not_json.status_code == 422
    assert not_json.json()["error"]["message"].startswith("the body is not JSON")
    shapeless = httpx.post(url, json={"events": []}, headers=agent)
    assert shapeless.status_code == 422
    too_many = httpx.post(url, json={"records": [{}] * 1001}, headers=agent)
    assert too_many.status_code == 413
    viewer = httpx.post(
        url, json={"records": []}, headers={"authorization": f"Bearer {server.key('viewer')}"}
    )
    assert viewer.status_code == 403
    assert httpx.post(url, json={"records": []}).status_code == 401
    actions = [r.entry.action for r in server.records(start)]
    assert actions.count("request.rejected") == 3
    assert "access.denied" in actions and "auth.login_failed" in actions


def test_cli_shows_and_sends_a_left_spool(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from chatledger.cli.integrations import app

    spool = tmp_path / "left"
    left = LedgerClient(f"http://127.0.0.1:{free_port()}", server.ingest_key, spool_dir=spool)
    for i in range(3):
        left.user_message(server.chatbot_id, "cli-conv", f"m{i}")
    left.close(flush=False)
    runner = CliRunner()
    shown = runner.invoke(app, ["spool", str(spool), "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"waiting":3' in shown.output
    monkeypatch.setenv("CHATLEDGER_API_KEY", server.ingest_key)
    sent = runner.invoke(app, ["send", str(spool), "--url", server.url, "--timeout", "30"])
    assert sent.exit_code == 0, sent.output
    assert "3 records delivered" in sent.output
    assert '"waiting":0' in runner.invoke(app, ["spool", str(spool), "--json"]).output
    cid = runner.invoke(app, ["conversation-id", server.chatbot_id, "cli-conv"]).output.strip()
    assert cid == ledger_conversation_id(server.chatbot_id, "cli-conv")
    assert (
        len([r for r in server.records() if r.entry.attributes.get("conversation_id") == cid]) == 4
    )
