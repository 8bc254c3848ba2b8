"""Benchmark the prompt-injection detector: detection rates, false positives, latency.

    .venv/bin/python benchmarks/bench_guard.py [path/to/guard-data]

Prints detection rates on direct and indirect injections and the false-positive rate on
benign hard negatives (shared/guard-data), and per-message latency of the rule layers
(normalisation, rules, structure, hidden markup, decoding; no embedding model) beside two
baselines measured on the same texts in the same run: NFKC normalisation alone, and a
single compiled regular-expression search. Each text's latency is its fastest of REPEATS
passes over the corpus, which filters out scheduler noise on a shared machine.

Also the cost of one anomaly observation (a request counted for burst detection) in the
deployment's shared guard state (a SQLite file, as every server process of a deployment
uses), beside the same observation counted in this process's memory.

Targets: ≥ 85 % direct, ≥ 70 % indirect, ≤ 3 % false positives, p99 ≤ 2 ms per message.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chatledger.guard.anomaly import AnomalyDetector
from chatledger.guard.detector import InjectionDetector
from chatledger.guard.evaluation import evaluate_corpora, load_samples
from chatledger.guard.shared_anomaly import SharedAnomalyCounters
from chatledger.guard.shared_state import SqliteShared

REPEATS = 5
DEFAULT_DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "guard-data"
BASELINE_RE = re.compile(r"ignore (?:all )?(?:previous|prior) instructions", re.IGNORECASE)


def _latencies_ms(texts: list[tuple[str, str]], fn: Callable[[str, str], object]) -> list[float]:
    """Per-text latency: the fastest of REPEATS passes over the whole corpus.

    Passes rather than back-to-back repeats, so a burst of load from other processes on a
    shared machine hits one text once rather than all of its repeats.
    """
    best = [float("inf")] * len(texts)
    for _ in range(REPEATS):
        for i, (text, source) in enumerate(texts):
            start = time.perf_counter_ns()
            fn(text, source)
            best[i] = min(best[i], time.perf_counter_ns() - start)
    return sorted(ns / 1e6 for ns in best)


def _pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main(argv: list[str]) -> int:
    data_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_DATA
    if not (data_dir / "purplellama-prompt-injection.json").is_file():
        print(f"guard data not found at {data_dir.resolve()}", file=sys.stderr)
        return 2
    detector = InjectionDetector(embeddings=None)
    print(f"detector {detector.name} {detector.version} (rule layers, no embeddings)")
    print(f"data     {data_dir.resolve()}\n")

    results = evaluate_corpora(detector, data_dir)
    direct = results["purplellama-direct"]
    indirect = [results["purplellama-indirect"], results["bipia-indirect"]]
    negatives = results["notinject"]
    ind_flagged = sum(r.flagged for r in indirect)
    ind_total = sum(r.total for r in indirect)

    print(f"{'corpus':<34}{'flagged':>9}{'total':>7}{'rate':>9}  target")
    rows = [
        ("direct (purplellama)", direct.flagged, direct.total, "≥ 85 %"),
        ("indirect (purplellama)", indirect[0].flagged, indirect[0].total, ""),
        ("indirect (bipia, planted in docs)", indirect[1].flagged, indirect[1].total, ""),
        ("indirect (both)", ind_flagged, ind_total, "≥ 70 %"),
        ("false positives (notinject)", negatives.flagged, negatives.total, "≤ 3 %"),
        (
            "false positives (benign documents)",
            results["benign-documents"].flagged,
            results["benign-documents"].total,
            "",
        ),
    ]
    for name, flagged, total, target in rows:
        print(f"{name:<34}{flagged:>9}{total:>7}{flagged / total:>8.1%}  {target}")

    texts = [(s.text, s.source) for s in load_samples(data_dir)]
    detector.scan("warm up")
    guard = _latencies_ms(texts, lambda t, s: detector.scan(t, s))  # type: ignore[arg-type]
    nfkc = _latencies_ms(texts, lambda t, s: unicodedata.normalize("NFKC", t))
    regex = _latencies_ms(texts, lambda t, s: BASELINE_RE.search(t))
    chars = [len(t) for t, _ in texts]
    print(
        f"\nlatency per message, {len(texts)} texts (median {statistics.median(chars):.0f} chars,"
        f" max {max(chars)}), fastest of {REPEATS} passes"
    )
    print(f"{'':<34}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, values in [
        ("guard rule layers", guard),
        ("baseline: NFKC only", nfkc),
        ("baseline: one compiled regex", regex),
    ]:
        print(f"{name:<34}{_pct(values, 0.5):>9.3f}{_pct(values, 0.99):>9.3f}{values[-1]:>9.3f}")

    print("\nanomaly observation (one request counted), 5,000 over 300 keys")
    print(f"{'':<34}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, values in _anomaly_costs().items():
        print(f"{name:<34}{_pct(values, 0.5):>9.3f}{_pct(values, 0.99):>9.3f}{values[-1]:>9.3f}")

    checks = [
        ("direct ≥ 85 %", direct.rate >= 0.85),
        ("indirect ≥ 70 %", ind_flagged / ind_total >= 0.70),
        ("false positives ≤ 3 %", negatives.rate <= 0.03),
        ("p99 ≤ 2 ms", _pct(guard, 0.99) <= 2.0),
    ]
    print("\n" + "  ".join(f"{name}: {'ok' if ok else 'MISSED'}" for name, ok in checks))
    return 0


def _anomaly_costs(count: int = 5000) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        shared = AnomalyDetector(shared=SharedAnomalyCounters(SqliteShared(Path(tmp) / "g.db")))
        detectors = {
            "shared (SQLite file)": shared,
            "baseline: in this process": AnomalyDetector(),
        }
        costs: dict[str, list[float]] = {}
        for name, detector in detectors.items():
            detector.record_request("warm up")
            values = []
            for i in range(count):
                t0 = time.perf_counter()
                detector.record_request(f"key-{i % 300}")
                values.append((time.perf_counter() - t0) * 1000)
            costs[name] = sorted(values)
        shared.close()
    return costs


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
