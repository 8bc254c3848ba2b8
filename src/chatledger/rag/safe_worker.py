"""Parse documents in a throw-away child process that can be killed.

A runaway parse (a pathological content stream, a decompression bomb the checks missed, a
bug in a C extension) must cost the server one killed child, not a hung or bloated worker.
So the parent runs a fresh interpreter (``python -I``: no user site, no PYTHON* variables, an
environment without the server's secrets, none of its memory), sends the bytes on stdin and
waits at most ``timeout_seconds`` of wall-clock time, start-up included; then it kills the
child. The child caps its own address space, CPU time and file writes with ``setrlimit``
before it reads anything, and answers with one JSON document on stdout.

A fresh interpreter costs a quarter to a third of a second of start-up, so small text,
Markdown and HTML files are parsed in-process instead (see ``ParseLimits``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from chatledger.rag.parse_types import (
    DocumentFormat,
    DocumentRejected,
    ParsedDocument,
    ParseLimits,
    Reason,
    Section,
)

# Runs in the child: puts the directory holding the ``chatledger`` package on the path (the
# child is isolated from PYTHONPATH) and hands over to worker_main.
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from chatledger.rag.safe_worker import worker_main; worker_main(sys.argv[2:])"
)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# Only what the interpreter itself may need to start; nothing else is passed on.
_ENV_ALLOWED = ("PATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
_MESSAGE_MAX = 300
_DETAIL_MAX = 120


def _short(value: object) -> str | int | float:
    """A detail value as a short scalar (a hostile file picks its member names)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return str(value)[:_DETAIL_MAX]


# ---------------------------------------------------------------------------- parent side


def parse_isolated(data: bytes, fmt: DocumentFormat, limits: ParseLimits) -> ParsedDocument:
    """Parse ``data`` as ``fmt`` in a sandboxed child process."""
    command = [
        sys.executable,
        "-I",
        "-c",
        _BOOTSTRAP,
        _PACKAGE_ROOT,
        fmt.value,
        json.dumps(limits.to_dict()),
    ]
    env = {name: os.environ[name] for name in _ENV_ALLOWED if name in os.environ}
    try:
        # On timeout, run() kills the child and reaps it before raising.
        done = subprocess.run(
            command,
            input=data,
            capture_output=True,
            timeout=limits.timeout_seconds,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DocumentRejected(
            Reason.TIMEOUT,
            f"parsing took longer than {limits.timeout_seconds:g} s and was stopped",
            details={"timeout_seconds": limits.timeout_seconds},
        ) from None
    if done.returncode == -signal.SIGXCPU:
        raise DocumentRejected(Reason.TIMEOUT, "parsing used up its CPU time and was stopped")
    if done.returncode != 0:
        raise DocumentRejected(
            Reason.WORKER_FAILED,
            "the parser process failed",
            details={"exit_status": done.returncode},
        )
    return _decode_reply(done.stdout, fmt)


def _decode_reply(raw: bytes, fmt: DocumentFormat) -> ParsedDocument:
    """Rebuild the result from the child's JSON, trusting nothing about its shape."""
    try:
        reply = json.loads(raw)
    except ValueError:
        reply = None
    if isinstance(reply, dict) and reply.get("ok") is False:
        try:
            reason = Reason(str(reply.get("reason")))
        except ValueError:
            reason = Reason.WORKER_FAILED
        raw_details = reply.get("details")
        details = {
            str(key)[:_DETAIL_MAX]: _short(value)
            for key, value in (raw_details.items() if isinstance(raw_details, dict) else ())
            if key != "reason"
        }
        message = str(reply.get("message", ""))[:_MESSAGE_MAX]
        raise DocumentRejected(reason, message, details=details)
    doc = _document_from(reply, fmt) if isinstance(reply, dict) else None
    if doc is None:
        raise DocumentRejected(Reason.WORKER_FAILED, "the parser process sent a bad reply")
    return doc


def _document_from(reply: dict[str, Any], fmt: DocumentFormat) -> ParsedDocument | None:
    title, page_count, raw = reply.get("title"), reply.get("page_count"), reply.get("sections")
    if not isinstance(title, str) or not isinstance(raw, list):
        return None
    if page_count is not None and not isinstance(page_count, int):
        return None
    sections: list[Section] = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3):
            return None
        text, path, page = item
        if not (
            isinstance(text, str)
            and isinstance(path, list)
            and all(isinstance(heading, str) for heading in path)
            and (page is None or isinstance(page, int))
        ):
            return None
        sections.append(Section(text=text, heading_path=tuple(path), page=page))
    return ParsedDocument(title=title, format=fmt, page_count=page_count, sections=sections)


# ----------------------------------------------------------------------------- child side


def _limit_resources(limits: ParseLimits) -> None:
    import resource

    cpu = math.ceil(limits.timeout_seconds) + 1  # a backstop: the parent's clock comes first
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.max_memory_bytes, limits.max_memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _error_reply(reason: Reason, message: str, details: dict[str, Any] | None = None) -> bytes:
    body = {
        "ok": False,
        "reason": reason.value,
        "message": message[:_MESSAGE_MAX],
        "details": {k: _short(v) for k, v in (details or {}).items()},
    }
    return json.dumps(body).encode()


def _write_all(payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(1, view) :]


def _parse(data: bytes, fmt: DocumentFormat, limits: ParseLimits) -> ParsedDocument:
    # Import only the parser needed: each library adds to the start-up time.
    if fmt is DocumentFormat.PDF:
        from chatledger.rag.parse_pdf import parse_pdf

        return parse_pdf(data, limits)
    if fmt is DocumentFormat.DOCX:
        from chatledger.rag.parse_docx import parse_docx

        return parse_docx(data, limits)
    if fmt is DocumentFormat.HTML:
        from chatledger.rag.parse_html import parse_html

        return parse_html(data, limits)
    if fmt is DocumentFormat.MARKDOWN:
        from chatledger.rag.parse_markdown import parse_markdown

        return parse_markdown(data, limits)
    from chatledger.rag.parse_text import parse_text

    return parse_text(data, limits)


def worker_main(argv: list[str]) -> None:
    fmt = DocumentFormat(argv[0])
    limits = ParseLimits.from_dict(json.loads(argv[1]))
    _limit_resources(limits)
    # Built before parsing: when memory runs out there may be none left to build it.
    out_of_memory = _error_reply(Reason.MEMORY_LIMIT, "parsing needed more memory than allowed")
    # Readers complain about every sloppy-but-readable file; here that is noise, not failure.
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    try:
        data = sys.stdin.buffer.read(limits.max_bytes + 1)
        doc = _parse(data, fmt, limits)
        body: dict[str, Any] = {
            "ok": True,
            "title": doc.title,
            "page_count": doc.page_count,
            "sections": [[s.text, list(s.heading_path), s.page] for s in doc.sections],
        }
        reply = json.dumps(body, ensure_ascii=False).encode()
    except MemoryError:
        _write_all(out_of_memory)
        os._exit(0)
    except DocumentRejected as exc:
        reply = _error_reply(exc.reason, exc.message, exc.details)
    except RecursionError:
        reply = _error_reply(Reason.MALFORMED, "the file is nested too deeply to parse")
    except Exception as exc:  # any other failure of a third-party parser means a bad file
        reply = _error_reply(Reason.MALFORMED, f"the file could not be parsed ({exc})")
    _write_all(reply)
