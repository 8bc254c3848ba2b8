"""``chatledger guard ...``: run the prompt-injection detector from the command line."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import orjson
import typer

from chatledger.cli.common import DatabaseUrl, DataDir, handle_errors, print_json
from chatledger.errors import InvalidInput
from chatledger.guard.detector import DEFAULT_THRESHOLD, InjectionDetector
from chatledger.guard.verdict import SOURCES, Source

app = typer.Typer(help="The prompt-injection guard.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """The prompt-injection guard."""


def _parse_line(number: int, raw: bytes) -> tuple[str, Source, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"line {number}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"line {number}: expected a JSON object")
    text = data.get("text")
    if not isinstance(text, str):
        raise InvalidInput(f"line {number}: 'text' must be a string")
    source = data.get("source", "user")
    if source not in SOURCES:
        raise InvalidInput(f"line {number}: 'source' must be 'user' or 'document'")
    return text, source, data.get("id")


@app.command()
@handle_errors
def scan(
    threshold: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Score at or above which a text is flagged."),
    ] = DEFAULT_THRESHOLD,
    embeddings: Annotated[
        bool,
        typer.Option(help="Use a locally installed embedding model if there is one."),
    ] = True,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
) -> None:
    """Scan JSON Lines from standard input, print one verdict per line as JSON.

    Each input line is {"text": "...", "source": "user" | "document"} (source defaults to
    "user"; an "id" is echoed back). A malformed line stops the run with its line number.
    """
    detector = InjectionDetector(threshold, embeddings="auto" if embeddings else None)
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        if not raw.strip():
            continue
        text, source, ident = _parse_line(number, raw)
        result = detector.scan(text, source).to_dict()
        if ident is not None:
            result["id"] = ident
        print_json(result)
