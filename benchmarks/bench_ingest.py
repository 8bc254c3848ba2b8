"""Ingestion benchmark: parse_document + chunk_document beside plain pypdf, in the same run.

    python benchmarks/bench_ingest.py [--pages 320] [--repeat 3]

Corpus: a PDF of ``--pages`` pages of generated prose (about 45 lines, ~3,500 characters a
page, an outline entry every 10 pages), written with reportlab into a temporary directory.

Figures (best of ``--repeat`` runs, baseline and candidate interleaved):
1. pages/second of ``parse_document`` (sandboxed worker process: start-up, page-tree check,
   outline, text extraction, JSON reply) followed by ``chunk_document`` (1,200/200 chars),
   beside pages/second of the baseline, pypdf's ``page.extract_text()`` over every page,
   in this process. Target: at least half the baseline's speed;
2. the fixed cost of the sandbox: ``parse_document`` of a one-page PDF, beside pypdf
   extracting the same page in this process;
3. in-process Markdown and HTML throughput over the demo knowledge base's articles.
"""

from __future__ import annotations

import argparse
import functools
import io
import random
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chatledger.rag.chunking import chunk_document
from chatledger.rag.parsing import ParseLimits, parse_document

WORDS = [
    *("storage", "account", "file", "folder", "sync", "device", "plan", "invoice", "backup"),
    *("version", "share", "link", "team", "admin", "password", "security", "policy", "upload"),
    *("download", "quota", "trash", "restore", "export", "region", "the", "of", "and", "to"),
    *("a", "in", "is", "that", "for", "it", "as", "with", "be", "on", "by", "this", "are"),
]
DEMO = Path(__file__).resolve().parents[1] / "src" / "chatledger" / "demo_data"
LIMITS = ParseLimits(timeout_seconds=600.0)


def make_pdf(path: Path, pages: int, seed: int = 7) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    rng = random.Random(seed)
    pdf = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    pdf.setTitle("Ingestion benchmark")
    for page in range(pages):
        if page % 10 == 0:
            key = f"chapter{page // 10}"
            pdf.bookmarkPage(key)
            pdf.addOutlineEntry(f"Chapter {page // 10 + 1}", key, level=0)
        text = pdf.beginText(56, 790)
        text.setFont("Helvetica", 9)
        for _ in range(45):
            words = [rng.choice(WORDS) for _ in range(13)]
            text.textLine(" ".join(words).capitalize() + ".")
        pdf.drawText(text)
        pdf.showPage()
    pdf.save()


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (the worker)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_of(repeat: int, *runs: Callable[[], object]) -> list[tuple[float, float]]:
    """Best (wall, CPU) seconds of each run, the runs interleaved so that load from other
    processes hits all alike. CPU time is the figure that such load disturbs least."""
    best = [(float("inf"), float("inf"))] * len(runs)
    for _ in range(repeat):
        for i, run in enumerate(runs):
            wall, cpu = time.perf_counter(), cpu_seconds()
            run()
            took = (time.perf_counter() - wall, cpu_seconds() - cpu)
            best[i] = (min(best[i][0], took[0]), min(best[i][1], took[1]))
    return best


def pypdf_extract(data: bytes) -> int:
    from pypdf import PdfReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sum(len(page.extract_text()) for page in PdfReader(io.BytesIO(data)).pages)


def ingest(data: bytes, name: str) -> int:
    return len(chunk_document(parse_document(data, name, None, LIMITS)))


def ingest_all(files: list[tuple[bytes, str]]) -> int:
    return sum(ingest(data, name) for data, name in files)


def main() -> None:
    parser = argparse.ArgumentParser(description="ingestion benchmark")
    parser.add_argument("--pages", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big.pdf", Path(tmp) / "small.pdf"
        make_pdf(big, args.pages)
        make_pdf(small, 1)
        big_data, small_data = big.read_bytes(), small.read_bytes()

    print(f"PDF: {args.pages} pages, {len(big_data) / 1024:.0f} KiB; best of {args.repeat}")
    chunks = ingest(big_data, "big.pdf")
    (base, base_cpu), (ours, ours_cpu) = best_of(
        args.repeat, lambda: pypdf_extract(big_data), lambda: ingest(big_data, "big.pdf")
    )
    pages = args.pages
    print("                                     wall clock              CPU time")
    print(
        f"  pypdf extract_text (baseline)   {pages / base:7.1f} pages/s {base:6.2f} s"
        f"   {pages / base_cpu:7.1f} pages/s"
    )
    print(
        f"  parse_document + chunk_document {pages / ours:7.1f} pages/s {ours:6.2f} s"
        f"   {pages / ours_cpu:7.1f} pages/s   ({chunks} chunks)"
    )
    ratio = base / ours
    verdict = "meets" if ratio >= 0.5 else "MISSES"
    print(
        f"  ratio {ratio:.2f} of baseline speed, wall clock ({verdict} the 0.5 target);"
        f" {base_cpu / ours_cpu:.2f} in CPU time"
    )

    (base, _), (ours, _) = best_of(
        args.repeat, lambda: pypdf_extract(small_data), lambda: ingest(small_data, "one.pdf")
    )
    print("one-page PDF (the sandbox's fixed cost)")
    print(f"  pypdf in-process {base * 1000:7.1f} ms   parse_document {ours * 1000:7.1f} ms")

    for suffix in (".md", ".html"):
        files = [(p.read_bytes(), p.name) for p in sorted(DEMO.glob(f"*{suffix}"))]
        size = sum(len(data) for data, _ in files)
        ((took, _),) = best_of(args.repeat, functools.partial(ingest_all, files))
        print(
            f"demo {suffix:5} x{len(files)} in-process: {took * 1000:6.1f} ms,"
            f" {size / took / 1024:7.0f} KiB/s"
        )


if __name__ == "__main__":
    main()
