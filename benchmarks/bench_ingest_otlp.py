"""Ingest benchmark for chatbots built elsewhere: each figure beside its baseline, same run.

    python benchmarks/bench_ingest_otlp.py [--conversations 1000] [--batch 512] [--senders 2]
                                           [--calls 5000] [--rounds 3]

Figures:
1. OTLP/HTTP: GenAI spans (per conversation: a retrieval span and a chat span per turn, three
   turns) sent as binary protobuf ExportTraceServiceRequests of --batch spans by --senders
   concurrent clients to a running server (loopback; the server in its own process), each
   request answered once durable; spans/s and ledger events/s. Baseline: the very same events
   (as the ingest service produces them, captured from a scratch run) appended directly with
   ``Ledger.append_many`` in the same batches by as many threads, on a fresh ledger.
   Target: OTLP >= 50% of direct.
2. SDK overhead per recorded model call (``LedgerClient.model_call``): the time the caller
   waits (validation, JSON, an append to the in-memory queue that a background thread writes
   to the SQLite spool every 10 ms), p50 / p99 / max, while the background sender ships to
   the same server. Target: p99 <= 1 ms. Baseline: ``json.dumps`` of a similar record alone.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from chatledger.api.app import API_PREFIX, create_app
from chatledger.client import LedgerClient
from chatledger.config import Settings
from chatledger.events import Actor, Event
from chatledger.identity.principal import Principal, system_principal
from chatledger.identity.roles import Role
from chatledger.integrations.otlp import decode_protobuf, map_spans
from chatledger.integrations.service import IntegrationService
from chatledger.platform import Platform
from chatledger.runtime import open_ledger

GENEROUS = {kind: [10_000_000, 60] for kind in ("ip", "visitor", "session", "api_key")}


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def make_spans(conversations: int) -> list[Span]:
    spans: list[Span] = []
    now = time.time_ns()
    for c in range(conversations):
        trace = os.urandom(16)
        conv = f"session-{c:07d}"
        history: list[dict[str, Any]] = [
            {"role": "system", "parts": [{"type": "text", "content": "Answer from the docs."}]}
        ]
        for turn in range(3):
            question = f"Question {turn} of conversation {c}: how long do refunds take?"
            history.append({"role": "user", "parts": [{"type": "text", "content": question}]})
            start = now + (c * 10 + turn) * 1_000_000
            retrieval = Span(
                trace_id=trace,
                span_id=os.urandom(8),
                name="retrieval knowledge-base",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=start,
                end_time_unix_nano=start + 3_000_000,
                attributes=[
                    kv("gen_ai.operation.name", "retrieval"),
                    kv("gen_ai.conversation.id", conv),
                    kv("gen_ai.data_source.id", "kb-main"),
                    kv("gen_ai.retrieval.query.text", question),
                    *[
                        kv(f"retrieval.documents.{i}.document.{k}", v)
                        for i in range(3)
                        for k, v in (
                            ("id", f"refund-policy.pdf#{i}"),
                            ("score", 0.9 - i / 10),
                            ("content", f"Refunds are issued within 14 days (passage {i})."),
                        )
                    ],
                ],
            )
            answer = "Refunds are issued within 14 days of the return [1]."
            chat = Span(
                trace_id=trace,
                span_id=os.urandom(8),
                name="chat gpt-4o-mini",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=start + 3_000_000,
                end_time_unix_nano=start + 640_000_000,
                attributes=[
                    kv("gen_ai.operation.name", "chat"),
                    kv("gen_ai.provider.name", "openai"),
                    kv("gen_ai.request.model", "gpt-4o-mini"),
                    kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                    kv("gen_ai.usage.input_tokens", 812),
                    kv("gen_ai.usage.output_tokens", 31),
                    kv("gen_ai.conversation.id", conv),
                    kv("gen_ai.input.messages", json.dumps(history)),
                    kv(
                        "gen_ai.output.messages",
                        json.dumps(
                            [
                                {
                                    "role": "assistant",
                                    "parts": [{"type": "text", "content": answer}],
                                    "finish_reason": "stop",
                                }
                            ]
                        ),
                    ),
                ],
            )
            history.append({"role": "assistant", "parts": [{"type": "text", "content": answer}]})
            spans += [retrieval, chat]
    return spans


def encode(spans: list[Span], chatbot_id: str) -> bytes:
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={
                    "attributes": [
                        kv("service.name", "support-bot"),
                        kv("chatledger.chatbot.id", chatbot_id),
                    ]
                },
                scope_spans=[ScopeSpans(scope={"name": "bench"}, spans=spans)],
            )
        ]
    )
    return request.SerializeToString()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def serve_forever(root: Path) -> None:
    """The server process: print how to reach it, serve until stdin closes."""
    settings = Settings.load(root)
    settings.rate_limits = GENEROUS
    settings.publish_dirs = []
    platform = Platform.open(settings)
    workspace = platform.identity.create_workspace("bench", Actor("system", "bench"))
    principal = system_principal(workspace)
    bot = platform.chatbots.create(principal, "external", {})
    key, _ = platform.identity.create_api_key(principal, role="agent", name="bench")
    app = create_app(platform)
    if f"{API_PREFIX}/ingest/events" not in {getattr(r, "path", "") for r in app.routes}:
        from chatledger.api.routes import ingest

        app.include_router(ingest.router, prefix=API_PREFIX)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    print(json.dumps({"url": f"http://127.0.0.1:{port}", "key": key, "bot": bot.id}), flush=True)
    sys.stdin.read()
    server.should_exit = True
    thread.join(timeout=30)
    platform.close()


def ledger_size(url: str) -> int:
    return int(httpx.get(f"{url}/health", timeout=30).json()["ledger_size"])


def bench_otlp(url: str, key: str, bodies: list[bytes], senders: int) -> tuple[float, int]:
    size0 = ledger_size(url)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/x-protobuf"}
    queue = list(bodies)
    lock = threading.Lock()
    failures: list[str] = []

    def sender() -> None:
        with httpx.Client(timeout=300) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop(0)
                response = client.post(f"{url}/v1/traces", content=body, headers=headers)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:300]}")

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if failures:
        raise SystemExit(f"OTLP export failed: {failures[0]}")
    return elapsed, ledger_size(url) - size0


def same_events(root: Path, spans: list[Span], batch: int) -> list[list[Event]]:
    """The events the ingest service writes for these spans, captured from a scratch run."""
    settings = Settings.load(root / "scratch")
    settings.publish_dirs = []
    platform = Platform.open(settings)
    try:
        workspace = platform.identity.create_workspace("scratch", Actor("system", "bench"))
        principal = system_principal(workspace)
        bot = platform.chatbots.create(principal, "external", {})
        agent = Principal(Actor("api_key", "bench", "agent"), workspace, Role.AGENT, "api_key")
        service = IntegrationService(platform.ledger, platform.chatbots)
        captured: list[list[Event]] = []
        original = platform.ledger.transact

        def capturing(fn: Any) -> Any:
            def wrapped(ctx: Any) -> Any:
                result, events = fn(ctx)
                captured.append(list(events))
                return result, events

            return original(wrapped)

        platform.ledger.transact = capturing  # type: ignore[method-assign]
        for i in range(0, len(spans), batch):
            decoded = decode_protobuf(encode(spans[i : i + batch], bot.id))
            records = list(map_spans(decoded, lambda _: True, None))
            service.ingest(agent, records, source="otlp")
        return captured
    finally:
        platform.close()


def bench_direct(root: Path, batches: list[list[Event]], threads_n: int) -> tuple[float, int]:
    settings = Settings.load(root / "direct")
    settings.publish_dirs = []
    ledger = open_ledger(settings)
    queue = list(batches)
    lock = threading.Lock()

    def appender() -> None:
        while True:
            with lock:
                if not queue:
                    return
                events = queue.pop(0)
            ledger.append_many(events)

    threads = [threading.Thread(target=appender) for _ in range(threads_n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    count = ledger.size()
    ledger.close()
    return elapsed, count


def stub_server() -> httpx.MockTransport:
    """Stands for a server on another machine: acknowledges each batch at once, in-process
    but doing almost nothing, so only the client's own cost is measured."""
    answers: dict[int, bytes] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        count = request.content.count(b'{"key":')
        if count not in answers:
            results = [{"key": "k", "status": "created", "seq": i} for i in range(count)]
            answers[count] = json.dumps({"results": results}).encode()
        return httpx.Response(200, content=answers[count])

    return httpx.MockTransport(handle)


def bench_sdk(
    root: Path, url: str, key: str, bot: str, calls: int, transport: httpx.BaseTransport | None
) -> tuple[list[float], list[float], float]:
    client = LedgerClient(url, key, spool_dir=root, transport=transport)
    waits: list[float] = []
    base: list[float] = []
    messages = [
        {"role": "system", "content": "Answer from the docs."},
        {"role": "user", "content": "How long do refunds take?"},
    ]
    for i in range(calls):
        t0 = time.perf_counter()
        client.model_call(
            bot,
            f"conv-{i // 10}",
            provider="openai",
            request_model="gpt-4o-mini",
            response_model="gpt-4o-mini-2024-07-18",
            input_tokens=812,
            output_tokens=31,
            latency_ms=640.2,
            finish_reason="stop",
            messages=messages,
            answer_id=f"ans-{i}",
        )
        waits.append((time.perf_counter() - t0) * 1000)
        record = {"type": "model.call", "data": {"messages": messages, "input_tokens": 812}}
        t1 = time.perf_counter()
        json.dumps(record, separators=(",", ":"))
        base.append((time.perf_counter() - t1) * 1000)
        if i % 100 == 99:
            time.sleep(0.01)  # an application does other things between calls
    t2 = time.perf_counter()
    client.flush(timeout=300)
    drain = time.perf_counter() - t2
    client.close()
    return waits, base, drain


def main() -> None:
    parser = argparse.ArgumentParser(description="OTLP and SDK ingest benchmark")
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_forever(args.serve)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(root / "server")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            url, key, bot = info["url"], info["key"], info["bot"]
            spans = make_spans(args.conversations)
            bodies = [
                encode(spans[i : i + args.batch], bot) for i in range(0, len(spans), args.batch)
            ]
            elapsed, events = bench_otlp(url, key, bodies, args.senders)
            batches = same_events(root, spans, args.batch)
            direct_elapsed, direct_events = bench_direct(root, batches, args.senders)
            otlp_rate = events / elapsed
            direct_rate = direct_events / direct_elapsed
            print(
                f"OTLP/HTTP protobuf: {len(spans)} GenAI spans ({args.conversations} "
                f"conversations) in requests of {args.batch}, {args.senders} senders, "
                f"server in its own process -> {events} ledger events"
            )
            print(
                f"  OTLP ingest        {len(spans) / elapsed:8.0f} spans/s "
                f"{otlp_rate:8.0f} events/s"
            )
            print(
                f"  direct append_many {'':8}         {direct_rate:8.0f} events/s "
                f"({direct_events} events, {args.senders} threads; baseline)"
            )
            print(f"  ratio              {otlp_rate / direct_rate:8.0%}   (target >= 50%)")
            print(
                f"SDK LedgerClient.model_call, {args.calls} calls a round (spool on disk; the "
                "background sender ships while the application records)"
            )
            for label, transport in (
                ("the server on this machine", None),
                ("a server elsewhere (stub)", "stub"),
            ):
                p99s = []
                for n in range(args.rounds):
                    waits, base, drain = bench_sdk(
                        root / f"sdk-{label[:5]}-{n}",
                        url,
                        key,
                        bot,
                        args.calls,
                        stub_server() if transport else None,
                    )
                    p99s.append(pct(waits, 0.99))
                    print(
                        f"  {label}, round {n + 1}: caller waits p50 {pct(waits, 0.5):.3f} ms "
                        f"p99 {pct(waits, 0.99):.3f} ms max {max(waits):.2f} ms; json.dumps "
                        f"alone p50 {pct(base, 0.5):.3f} p99 {pct(base, 0.99):.3f} ms "
                        f"(baseline); drained {drain:.2f} s after the last call"
                    )
                print(
                    f"  {label}: p99 median of rounds {statistics.median(p99s):.3f} ms "
                    f"(target <= 1 ms)"
                )
            print(
                f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: with the "
                "server on the same CPUs, its ingest work preempts the caller)"
            )
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
