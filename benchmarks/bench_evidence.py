"""Evidence pack benchmark: each figure beside a baseline measured in the same run.

    python benchmarks/bench_evidence.py [--turns 25] [--background 50000] [--repeat 5]

A conversation of ``--turns`` question/answer turns (2 x turns messages; the default is a
50-message conversation) is held through the real chat path (offline responder, retrieval
over three demo documents) on a ledger that also holds ``--background`` other events, so
that proofs have realistic depth. Figures:

1. building the evidence pack (record the export, replay, proofs, payloads, HTML, signed
   manifest, self-check, zip), median and max of ``--repeat`` runs; target <= 2 s;
2. verifying the pack offline (``verify-evidence``);
3. baseline: reading the same entries and decrypting their payloads (``Ledger.read``), and
   replaying the conversation alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chatledger.audit.evidence import (
    Custodian,
    EvidenceScope,
    build_evidence_pack,
    verify_evidence,
)
from chatledger.chat.replay import replay_conversation
from chatledger.config import Settings
from chatledger.events import Actor, Entity, Event
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform

QUESTIONS = [
    "How do I reset my password?",
    "How do I turn on two-factor authentication?",
    "Can I get a refund after 30 days?",
    "What happens to my sessions after a password reset?",
    "Which second factors are supported?",
    "Do you take bitcoin?",
]


def background(platform: Platform, count: int) -> None:
    events = [
        Event(
            "message.user",
            Actor("anonymous", f"visitor-{i % 500}"),
            Entity("message", f"bg-{i}"),
            subject=f"visitor-{i % 500}",
            attributes={"chatbot_id": "bot-bg", "conversation_id": f"bg-conv-{i // 20}"},
            payload={"text": f"background question number {i} " + "x" * 200},
        )
        for i in range(count)
    ]
    for start in range(0, count, 5000):
        platform.ledger.append_many(events[start : start + 5000])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=25)
    parser.add_argument("--background", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings.load(root / "data")
        settings.publish_dirs = []
        settings.checkpoint_every = 100_000
        platform = Platform.open(settings)
        try:
            workspace = platform.identity.create_workspace("Bench", Actor("system", "bench"))
            principal = system_principal(workspace)
            bot = platform.chatbots.create(principal, "Support", {"system_prompt": "Be brief."})
            for name in ("password-reset.txt", "two-factor-authentication.md", "refund-policy.pdf"):
                data = (resources.files("chatledger") / "demo_data" / name).read_bytes()
                platform.documents.upload(principal, bot.id, name, data, None)
            t0 = time.perf_counter()
            background(platform, args.background // 2)
            conv = platform.chat.start(principal, bot.id, visitor_id="visitor-bench")
            for i in range(args.turns):
                platform.chat.send(principal, conv.id, QUESTIONS[i % len(QUESTIONS)], [])
            platform.chat.update(principal, conv.id, {"resolution": "resolved", "ended": True})
            background(platform, args.background - args.background // 2)
            ledger = platform.ledger
            print(
                f"ledger: {ledger.size()} entries (set up in {time.perf_counter() - t0:.1f} s); "
                f"conversation of {2 * args.turns} messages"
            )
            builds: list[float] = []
            verifies: list[float] = []
            custodian = Custodian(Actor("user", "bench", "auditor"), "cli", "benchmark")
            for i in range(args.repeat):
                out = root / f"pack-{i}.zip"
                t = time.perf_counter()
                result = build_evidence_pack(
                    ledger, EvidenceScope(conversation_id=conv.id), custodian, out
                )
                builds.append(time.perf_counter() - t)
                t = time.perf_counter()
                report = verify_evidence(out, str(ledger.verifier))
                verifies.append(time.perf_counter() - t)
                assert report.ok, report.to_json()
            entries = result.manifest["entries"]
            size = out.stat().st_size
            seqs = replay_conversation(ledger, conv.id)["ledger_seqs"]
            reads: list[float] = []
            replays: list[float] = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                for seq in seqs:
                    ledger.read(seq)
                reads.append(time.perf_counter() - t)
                t = time.perf_counter()
                replay_conversation(ledger, conv.id)
                replays.append(time.perf_counter() - t)
        finally:
            platform.close()
    med = statistics.median
    print(
        f"evidence pack ({entries} entries, {size / 1024:.0f} KiB)   "
        f"median {med(builds) * 1000:7.1f} ms  max {max(builds) * 1000:7.1f} ms  (target 2000 ms)"
    )
    print(f"  verify-evidence (offline)             median {med(verifies) * 1000:7.1f} ms")
    print(f"  baseline: read + decrypt {len(seqs)} entries  median {med(reads) * 1000:7.1f} ms")
    print(f"  baseline: replay the conversation     median {med(replays) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
