"""Chat-turn benchmark over real HTTP, with the offline responder over a 10,000-chunk corpus.

    python benchmarks/bench_chat.py [--chunks 10000] [--turns 300] [--workers 1]

At 1, 10 and 50 concurrent clients: p50 / p95 latency and turns per second, and the share of
the server's time spent in the ledger (from the Server-Timing header of each answer). Beside
it, in the same run, the same load on GET /health: the floor that HTTP and the server add.

Each line also gives the server's CPU time per request (its processes' user + system time
from /proc, Linux only). With N clients that each wait for their answer before asking again,
a server with C cores answers at most C / cpu requests per second, so a request waits at
least about N * cpu / C on average: the bound the line after the table prints for a latency
target.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chatledger.config import Settings
from chatledger.events import Actor
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform

TOPICS = [
    "refund",
    "invoice",
    "password",
    "storage",
    "sync",
    "backup",
    "team",
    "billing",
    "export",
    "security",
    "sharing",
    "mobile",
    "quota",
    "upgrade",
    "support",
    "privacy",
]
WORDS = [
    "account",
    "plan",
    "customer",
    "file",
    "folder",
    "device",
    "browser",
    "settings",
    "admin",
    "email",
    "payment",
    "card",
    "order",
    "month",
    "year",
    "limit",
    "access",
    "link",
    "download",
    "upload",
    "version",
    "history",
    "trash",
    "restore",
    "policy",
    "contract",
    "region",
    "server",
    "network",
    "error",
    "message",
    "page",
    "option",
    "button",
]


def paragraph(rng: random.Random, topic: str) -> str:
    words = [rng.choice(WORDS) for _ in range(120)]
    for i in range(0, 120, 9):
        words[i] = topic
    return f"About {topic}: " + " ".join(words).capitalize() + "."


def build(data_dir: Path, chunks: int) -> tuple[str, str]:
    settings = Settings.load(data_dir)
    settings.rate_limits = {k: [10_000_000, 60] for k in ("ip", "visitor", "session", "api_key")}
    settings.publish_dirs = []
    settings.save()
    platform = Platform.open(settings)
    try:
        ws = platform.identity.create_workspace("Bench", Actor("system", "bench"))
        op = system_principal(ws)
        key, _ = platform.identity.create_api_key(op, role="admin")
        bot = platform.chatbots.create(
            op, "Bench bot", {"retrieval": {"chunk_size": 900, "chunk_overlap": 0}}
        )
        rng = random.Random(1)
        per_doc = 30  # ~27 KB documents parse in-process
        made = 0
        n = 0
        while made < chunks:
            topic = TOPICS[n % len(TOPICS)]
            body = "\n\n".join(paragraph(rng, topic) for _ in range(per_doc))
            result = platform.documents.upload(op, bot.id, f"{topic}-{n}.md", body.encode(), None)
            made += result.chunks
            n += 1
        return key, bot.id
    finally:
        platform.close()


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the serve workers), from /proc."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:  # fields[1] is the parent pid
            total += int(fields[11]) + int(fields[12])
    return total / tick


def run_load(
    url: str, key: str, bot: str, clients: int, turns: int, chat: bool, pid: int
) -> dict[str, float]:
    per_client = max(1, turns // clients)
    latencies: list[float] = []
    ledger_ms: list[float] = []
    server_ms: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def client(i: int) -> None:
        rng = random.Random(i)
        headers = {"authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            conv = http.post(f"/api/v1/chatbots/{bot}/conversations", json={}).json()["id"]
            for _ in range(per_client):
                t0 = time.perf_counter()
                if chat:
                    question = f"How does {rng.choice(TOPICS)} work with my {rng.choice(WORDS)}?"
                    r = http.post(f"/api/v1/conversations/{conv}/messages", json={"text": question})
                else:
                    r = http.get("/health")
                elapsed = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:100]}")
                    continue
                timing = dict(
                    part.strip().split(";dur=")
                    for part in r.headers.get("server-timing", "").split(",")
                    if ";dur=" in part
                )
                with lock:
                    latencies.append(elapsed)
                    if timing:
                        ledger_ms.append(float(timing["ledger"]))
                        server_ms.append(float(timing["total"]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    cpu0 = server_cpu_seconds(pid)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = server_cpu_seconds(pid) - cpu0
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}")
    latencies.sort()
    if not latencies:
        raise SystemExit("no request succeeded: is the server running?")
    return {
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "rate": len(latencies) / wall,
        "ledger_share": (sum(ledger_ms) / sum(server_ms)) if server_ms else 0.0,
        "ledger_p50": statistics.median(ledger_ms) if ledger_ms else 0.0,
        "cpu_ms": 1000 * cpu / len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1, help="server processes (serve --workers)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        data_dir = Path(tmp) / "data"
        t0 = time.perf_counter()
        key, bot = build(data_dir, args.chunks)
        print(f"corpus of >= {args.chunks} chunks built in {time.perf_counter() - t0:.0f} s")
        port = 18000 + os.getpid() % 1000
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chatledger.cli",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                "--workers",
                str(args.workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            print(f"server: chatledger serve --workers {args.workers}")
            print(
                "clients | chat turn p50 / p95 ms | turns/s | server CPU ms per turn | ledger "
                "share of server time (ledger p50 ms) | GET /health p50 / p95 ms, req/s, "
                "server CPU ms per request (same load, same run)"
            )
            cpu_turn, cpu_health = [], []
            for clients in (1, 10, 50):
                turns = max(args.turns, clients * 4)
                chat = run_load(url, key, bot, clients, turns, True, server.pid)
                floor = run_load(url, key, bot, clients, turns, False, server.pid)
                cpu_turn.append(chat["cpu_ms"])
                cpu_health.append(floor["cpu_ms"])
                print(
                    f"{clients:>7} | {chat['p50']:8.1f} / {chat['p95']:8.1f} |"
                    f" {chat['rate']:7.1f} | {chat['cpu_ms']:6.1f} |"
                    f" {chat['ledger_share']:6.1%} ({chat['ledger_p50']:.2f}) |"
                    f" {floor['p50']:6.1f} / {floor['p95']:6.1f}, {floor['rate']:7.1f},"
                    f" {floor['cpu_ms']:5.2f}"
                )
            cores = os.cpu_count() or 1
            turn_cpu, health_cpu = min(cpu_turn), min(cpu_health)
            print(
                f"bound at 50 waiting clients on {cores} cores: a turn waits on average at least "
                f"50 x {turn_cpu:.1f} ms / {cores} = {50 * turn_cpu / cores:,.0f} ms; "
                f"a GET /health at least 50 x {health_cpu:.2f} ms / {cores} = "
                f"{50 * health_cpu / cores:,.0f} ms. "
                f"A p95 of 100 ms needs at most {100 * cores / 50:.1f} ms of server CPU per turn."
            )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
