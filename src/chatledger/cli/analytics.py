"""``chatledger analytics REPORT``: reports computed from the ledger, as a table, JSON or CSV."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from chatledger.cli.common import (
    DatabaseUrl,
    DataDir,
    JsonFlag,
    fail,
    handle_errors,
    opened_ledger,
    print_json,
)

app = typer.Typer(
    help="Unanswered questions, feedback, outcomes, citations, security trends.",
    no_args_is_help=True,
)

ChatbotOpt = Annotated[
    list[str] | None, typer.Option("--chatbot", help="A chatbot id (repeatable; default: all).")
]
FromOpt = Annotated[str | None, typer.Option("--from", help="Start (ISO 8601 date or time, UTC).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="End, inclusive (a bare date: whole day).")]
FormatOpt = Annotated[str, typer.Option("--format", help="table, json or csv.")]
LimitOpt = Annotated[int, typer.Option(help="Rows of ranked reports.", min=1, max=10_000)]


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return " | ".join(str(v) for v in value)[:80]
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


def _run(
    name: str,
    chatbot: list[str] | None,
    from_: str | None,
    to: str | None,
    format: str,
    limit: int,
    data_dir: Any,
    database: str | None,
    json: bool,
) -> None:
    import getpass

    from chatledger.audit.analytics import AnalyticsQuery, record_view, run_report
    from chatledger.events import Actor

    chosen = "json" if json else format
    if chosen not in ("table", "json", "csv"):
        raise fail("--format must be table, json or csv", 2)
    query = AnalyticsQuery(
        chatbot_ids=tuple(chatbot) if chatbot else None, start=from_, end=to, limit=limit
    )
    with opened_ledger(data_dir, database) as ledger:
        report = run_report(ledger, name, query)
        viewer = Actor("user", f"cli:{getpass.getuser()}", "operator")
        record_view(ledger, viewer, name, len(report.rows), query, via="cli")
    if chosen == "json":
        print_json(report.to_json(query))
    elif chosen == "csv":
        sys.stdout.write(report.to_csv())
    else:
        rows = [[_cell(r.get(c)) for c in report.columns] for r in report.rows]
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(report.columns)]
        print("  ".join(c.ljust(w) for c, w in zip(report.columns, widths, strict=True)).rstrip())
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if not rows:
            print("(no data)")
        if report.truncated:
            print("(truncated: narrow the time range)", file=sys.stderr)


def _command(name: str, doc: str) -> None:
    def command(
        chatbot: ChatbotOpt = None,
        from_: FromOpt = None,
        to: ToOpt = None,
        format: FormatOpt = "table",
        limit: LimitOpt = 50,
        data_dir: DataDir = None,
        database: DatabaseUrl = None,
        json: JsonFlag = False,
    ) -> None:
        _run(name, chatbot, from_, to, format, limit, data_dir, database, json)

    command.__doc__ = doc
    command.__name__ = name.replace("-", "_")
    app.command(name)(handle_errors(command))


def _register() -> None:
    from chatledger.audit.analytics import DESCRIPTIONS

    for name, doc in DESCRIPTIONS.items():
        _command(name, doc)


_register()
