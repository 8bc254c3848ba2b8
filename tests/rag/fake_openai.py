"""A small but real OpenAI-compatible HTTP server on loopback, for provider tests.

The first path segment picks the behaviour, so one server serves every scenario:
``http://127.0.0.1:PORT/<mode>/v1/chat/completions``.

modes: ok, no-usage, fail-once (500 then ok), rate-limited (429 + Retry-After: 1, then ok),
always-500, retry-after-huge (429 + Retry-After: 3600), unauthorized (401 echoing the
bearer token, as some servers do), malformed (200, not JSON), no-choices (200, JSON without
choices), stream-cut (the stream stops mid-way, connection dropped), stream-error (an error
event inside the stream), hang (never answers until the server closes).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "Refunds are issued within 14 days of the return [1]."
PROMPT_TOKENS = 42
COMPLETION_TOKENS = 11
MODEL = "fake-model-2024-01-01"


@dataclass(frozen=True)
class RecordedRequest:
    mode: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]
    at: float  # time.monotonic()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # idle keep-alive connections end, so the server can always shut down
    disable_nagle_algorithm = True  # stream events go out at once, as from a real server
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        mode = self.path.strip("/").split("/", 1)[0]
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        fake = self.server.fake
        attempt = fake.record(
            RecordedRequest(mode, self.path, _lower(self.headers.items()), body, time.monotonic())
        )
        try:
            self._respond(mode, attempt, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout tests): fine

    def _respond(self, mode: str, attempt: int, body: dict[str, Any]) -> None:
        if mode == "hang":
            self.server.fake.released.wait(10)
            self.close_connection = True
            return
        if (mode == "fail-once" and attempt == 1) or mode == "always-500":
            return self._json(500, {"error": {"message": "internal error", "type": "server"}})
        if mode == "rate-limited" and attempt == 1:
            return self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
        if mode == "retry-after-huge":
            return self._json(429, {"error": {"message": "quota"}}, {"Retry-After": "3600"})
        if mode == "unauthorized":
            token = self.headers.get("authorization", "").removeprefix("Bearer ")
            return self._json(401, {"error": {"message": f"Incorrect API key provided: {token}"}})
        if mode == "malformed":
            return self._raw(200, b"{this is not json", "application/json")
        if mode == "no-choices":
            return self._json(200, {"object": "chat.completion", "model": MODEL})
        if body.get("stream"):
            return self._stream(mode, body)
        reply: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY},
                    "finish_reason": "stop",
                }
            ],
        }
        if mode != "no-usage":
            reply["usage"] = _usage()
        return self._json(200, reply)

    def _stream(self, mode: str, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        pieces = [w + " " for w in REPLY.split(" ")]
        pieces[-1] = pieces[-1].rstrip()
        self._chunk(b": keep-alive comment\n\n")
        self._event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        for i, piece in enumerate(pieces):
            if mode == "stream-cut" and i == 3:
                self.wfile.flush()
                self.close_connection = True
                return  # no terminating chunk: the client sees a truncated body
            if mode == "stream-error" and i == 2:
                self._event({"error": {"message": "model overloaded"}})
                break
            self._event({"choices": [{"index": 0, "delta": {"content": piece}}]})
        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        if include_usage and mode != "no-usage":
            self._event({"choices": [], "usage": _usage()})
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _event(self, payload: dict[str, Any]) -> None:
        payload = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": MODEL, **payload}
        self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _raw(
        self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins handler threads: nothing outlives a test
    fake: FakeOpenAI


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def base_url(self, mode: str = "ok") -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    def record(self, request: RecordedRequest) -> int:
        """Store a request; returns how many requests this mode has seen, this one included."""
        with self._lock:
            self.requests.append(request)
            return sum(r.mode == request.mode for r in self.requests)

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
