"""A streamed answer the visitor cuts off is recorded (partial text, disconnected finish
reason) as soon as the connection closes, over real HTTP; a complete stream records once."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Generator, Iterator
from importlib import resources
from pathlib import Path

import pytest

from chatledger.ledger.service import Record
from chatledger.rag.offline import OfflineResponder
from chatledger.rag.providers import CompletionRequest, StreamEvent, TextDelta
from tests.api.server import LiveServer, live_server, sse_events

QUESTION = "How do I reset my password?"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    # A model that takes its time between words, like a real one: the visitor can leave
    # while it is still answering.
    original = OfflineResponder.stream

    def slow_stream(
        self: OfflineResponder, request: CompletionRequest
    ) -> Generator[StreamEvent, None, None]:
        for item in original(self, request):
            if isinstance(item, TextDelta):
                time.sleep(0.05)
            yield item

    monkeypatch.setattr(OfflineResponder, "stream", slow_stream)
    with live_server(tmp_path / "data") as live:
        yield live


def _conversation(server: LiveServer) -> str:
    doc = (resources.files("chatledger") / "demo_data" / "password-reset.txt").read_bytes()
    with server.client() as api:
        bot = api.post("/chatbots", json={"name": "Support"}).json()
        response = api.post(
            f"/chatbots/{bot['id']}/documents", files={"file": ("password-reset.txt", doc)}
        )
        assert response.status_code == 201, response.text
        conv = api.post(f"/chatbots/{bot['id']}/conversations", json={}).json()
    return str(conv["id"])


def _records(server: LiveServer, conv_id: str, action: str) -> list[Record]:
    ledger = server.platform.ledger
    return [
        r
        for r in ledger.records(0, ledger.size())
        if r.entry.action == action and r.entry.attributes.get("conversation_id") == conv_id
    ]


def _first_delta_then_hang_up(server: LiveServer, conv_id: str) -> str:
    """Post a streamed message over a raw socket, read one delta, close the connection."""
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"text": QUESTION, "stream": True}).encode()
    request = (
        f"POST /api/v1/conversations/{conv_id}/messages HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {server.admin_key}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = socket.create_connection((host, int(port)), timeout=10)
    try:
        sock.sendall(request)
        received = b""
        marker = b"event: delta\ndata: "
        while marker not in received or b"\n\n" not in received.split(marker, 1)[1]:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        assert b" 200 " in received.split(b"\r\n", 1)[0], received
    finally:
        sock.close()
    event = received.split(b"event: delta\ndata: ", 1)[1].split(b"\n\n", 1)[0]
    return str(json.loads(event)["text"])


def test_a_stream_cut_off_by_the_client_is_recorded_at_once(server: LiveServer) -> None:
    conv_id = _conversation(server)
    first = _first_delta_then_hang_up(server, conv_id)

    answers: list[Record] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not answers:
        answers = _records(server, conv_id, "message.answer")
        time.sleep(0.05)
    assert len(answers) == 1, "the partial answer was not recorded after the disconnect"
    answer = answers[0]
    assert answer.entry.attributes["gen_ai.response.finish_reasons"] == ["client_disconnected"]
    assert answer.payload is not None
    partial = str(answer.payload["text"])
    assert partial.startswith(first)
    calls = _records(server, conv_id, "model.call")
    assert len(calls) == 1
    assert calls[0].entry.attributes["gen_ai.response.finish_reasons"] == ["client_disconnected"]
    assert calls[0].entry.attributes["message_id"] == answer.entry.attributes["message_id"]

    # The whole answer is longer than what was streamed before the visitor left.
    with server.client() as api:
        full = api.post(f"/conversations/{conv_id}/messages", json={"text": QUESTION}).json()
    assert len(partial) < len(full["answer"]["text"])
    assert len(_records(server, conv_id, "message.user")) == 2
    report = server.platform.ledger.verify()
    assert report.ok, report.to_json()


def test_a_complete_stream_is_recorded_exactly_once(server: LiveServer) -> None:
    conv_id = _conversation(server)
    with (
        server.client() as api,
        api.stream(
            "POST",
            f"/conversations/{conv_id}/messages",
            json={"text": QUESTION, "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        events = sse_events(response)
    assert events[-1][0] == "answer"
    final = events[-1][1]
    streamed = "".join(d["text"] for kind, d in events if kind == "delta")
    time.sleep(0.3)  # the stream is closed after the last event: nothing more is recorded
    answers = _records(server, conv_id, "message.answer")
    assert len(answers) == 1 and len(_records(server, conv_id, "model.call")) == 1
    assert answers[0].entry.seq == final["seq"]
    assert answers[0].payload is not None and answers[0].payload["text"] == streamed
    assert answers[0].entry.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert server.platform.ledger.verify().ok
