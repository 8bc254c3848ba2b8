"""``chatledger audit search | export | forward``: investigation and SIEM commands."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from chatledger.cli.common import (
    DatabaseUrl,
    DataDir,
    JsonFlag,
    err_console,
    fail,
    handle_errors,
    print_json,
    progress_bar,
    settings_from,
)
from chatledger.errors import InvalidInput
from chatledger.events import Actor

FromOpt = Annotated[
    str | None,
    typer.Option("--from", help="From this ISO 8601 UTC date or date-time (inclusive)."),
]
ToOpt = Annotated[
    str | None, typer.Option("--to", help="Up to this ISO 8601 UTC date or date-time (exclusive).")
]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Actor id.")]
RoleOpt = Annotated[str | None, typer.Option("--role", help="Actor role (comma-separated).")]
ActionOpt = Annotated[
    str | None,
    typer.Option("--action", help="Action or prefix such as 'guard.*' (comma-separated)."),
]
CategoryOpt = Annotated[
    str | None, typer.Option("--category", help="Event category (comma-separated).")
]
EntityTypeOpt = Annotated[str | None, typer.Option("--entity-type", help="Entity type.")]
EntityIdOpt = Annotated[str | None, typer.Option("--entity-id", help="Entity id.")]
ChatbotOpt = Annotated[str | None, typer.Option("--chatbot-id", help="Chatbot id.")]
ConversationOpt = Annotated[str | None, typer.Option("--conversation-id", help="Conversation id.")]
OutcomeOpt = Annotated[str | None, typer.Option("--outcome", help="Outcome (comma-separated).")]
SeverityOpt = Annotated[
    str | None, typer.Option("--severity", help="Severity of security events (comma-separated).")
]
QueryOpt = Annotated[
    str | None,
    typer.Option("--query", "-q", help="Full text over message, answer and feedback text."),
]
OperatorOpt = Annotated[
    str | None,
    typer.Option(
        "--operator", help="Who runs this (recorded with the access event; default: the CLI)."
    ),
]


def _actor(operator: str | None) -> Actor:
    return Actor("user", operator, "operator") if operator else Actor("system", "cli")


@contextlib.contextmanager
def _ledger(data_dir: Path | None, database: str | None) -> Iterator[Any]:
    from chatledger.runtime import open_ledger

    settings = settings_from(data_dir, database)
    ledger = open_ledger(settings)
    try:
        yield settings, ledger
    finally:
        ledger.close()


def _line(item: dict[str, Any]) -> str:
    entry = item["entry"]
    actor = entry.get("actor", {})
    entity = entry.get("entity", {})
    who = f"{actor.get('type')}:{actor.get('id')}" + (
        f"({actor['role']})" if actor.get("role") else ""
    )
    text = (
        f"{item['seq']:>8}  {entry.get('ts')}  {entry.get('action'):<26} "
        f"{entry.get('outcome'):<8} {who}  {entity.get('type')}:{entity.get('id')}"
    )
    if item["payload_status"] == "erased":
        text += "  [payload erased]"
    match = item.get("match")
    if match:
        text += f"\n          … {match['snippet']}"
    return text


def search_command(
    start: FromOpt = None,
    end: ToOpt = None,
    actor: ActorOpt = None,
    role: RoleOpt = None,
    action: ActionOpt = None,
    category: CategoryOpt = None,
    entity_type: EntityTypeOpt = None,
    entity_id: EntityIdOpt = None,
    chatbot_id: ChatbotOpt = None,
    conversation_id: ConversationOpt = None,
    outcome: OutcomeOpt = None,
    severity: SeverityOpt = None,
    query: QueryOpt = None,
    order: Annotated[str, typer.Option(help="newest or oldest first.")] = "newest",
    limit: Annotated[int, typer.Option(help="Items per page (1-200).")] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="Continue after this next_cursor of a previous page.")
    ] = None,
    operator: OperatorOpt = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Search the audit ledger (payloads are not shown; text matches show a snippet).

    The search is recorded as an audit.search event."""
    from chatledger.audit.search import Filters, record_access, search
    from chatledger.audit.textindex import index_for, sqlite_path

    filters = Filters.parse(
        start=start,
        end=end,
        actor=actor,
        role=role,
        action=action,
        category=category,
        entity_type=entity_type,
        entity_id=entity_id,
        chatbot_id=chatbot_id,
        conversation_id=conversation_id,
        outcome=outcome,
        severity=severity,
        q=query,
    )
    with _ledger(data_dir, database) as (_, ledger):
        if filters.q and sqlite_path(ledger) is not None:
            index = index_for(ledger)
            state = index.state()
            with progress_bar("indexing text", enabled=not json) as update:
                while not state.complete:
                    index.catch_up(max_entries=20_000)
                    state = index.state()
                    update(state.indexed_through, state.ledger_size)
        page = search(ledger, filters, order=order, cursor=cursor, limit=limit, budget_s=None)
        record_access(
            ledger,
            _actor(operator),
            "audit.search",
            filters,
            {
                "order": order,
                "limit": limit,
                "cursor": cursor,
                "results": len(page.items),
                "has_more": page.next_cursor is not None,
                "via": "cli",
            },
        )
    result = page.to_json()
    if json:
        print_json(result)
        return
    for item in result["items"]:
        print(_line(item))
    if not result["items"]:
        err_console.print("no matching events", markup=False)
    if result["next_cursor"]:
        err_console.print(f"more: --cursor {result['next_cursor']}", markup=False)


def export_command(
    out: Annotated[Path, typer.Option("--out", help="File to write ('-' for standard output).")],
    format: Annotated[
        str,
        typer.Option(
            "--format", help="jsonl, csv, ocsf, cef, leef, ecs or splunk_hec (default jsonl)."
        ),
    ] = "jsonl",
    start: FromOpt = None,
    end: ToOpt = None,
    actor: ActorOpt = None,
    role: RoleOpt = None,
    action: ActionOpt = None,
    category: CategoryOpt = None,
    entity_type: EntityTypeOpt = None,
    entity_id: EntityIdOpt = None,
    chatbot_id: ChatbotOpt = None,
    conversation_id: ConversationOpt = None,
    outcome: OutcomeOpt = None,
    severity: SeverityOpt = None,
    query: QueryOpt = None,
    operator: OperatorOpt = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            help="Worker processes rendering a large export (0: one per core, up to 4; "
            "1: in this process).",
            min=0,
            max=32,
        ),
    ] = 0,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Export matching events, oldest first, in a SIEM format (no payload content).

    The export is recorded as an audit.export event."""
    from chatledger.audit.formats import FormatContext, get_format
    from chatledger.audit.search import Filters, prepare_export, record_access
    from chatledger.audit.textindex import index_for, sqlite_path

    fmt = get_format(format)
    filters = Filters.parse(
        start=start,
        end=end,
        actor=actor,
        role=role,
        action=action,
        category=category,
        entity_type=entity_type,
        entity_id=entity_id,
        chatbot_id=chatbot_id,
        conversation_id=conversation_id,
        outcome=outcome,
        severity=severity,
        q=query,
    )
    to_stdout = str(out) == "-"
    with _ledger(data_dir, database) as (_, ledger):
        if filters.needs_index and sqlite_path(ledger) is not None:
            index = index_for(ledger)
            while not index.state().complete:
                index.catch_up(max_entries=20_000)
        exporter = prepare_export(
            ledger, filters, fmt, FormatContext(origin=ledger.origin), budget_s=None
        )
        record_access(
            ledger,
            _actor(operator),
            "audit.export",
            filters,
            {"format": fmt.name, "upto_seq": exporter.upto - 1, "via": "cli"},
        )
        written = 0
        tmp = None if to_stdout else out.with_name(out.name + ".partial")
        with contextlib.ExitStack() as stack:
            sink: IO[bytes] = (
                sys.stdout.buffer if tmp is None else stack.enter_context(open(tmp, "wb"))
            )
            with progress_bar(f"exporting {fmt.name}", enabled=not to_stdout) as update:
                for chunk in exporter.chunks(workers=jobs or None):
                    sink.write(chunk)
                    written += len(chunk)
                    update(exporter.last_seq or 0, exporter.upto)
            sink.flush()
            if tmp is not None:
                os.fsync(sink.fileno())
        if tmp is not None:
            os.replace(tmp, out)
    summary = {
        "format": fmt.name,
        "events": exporter.count,
        "bytes": written,
        "out": str(out),
        "upto_seq": exporter.upto - 1,
    }
    if json and not to_stdout:
        print_json(summary)
    elif not to_stdout:
        print(f"wrote {exporter.count} events ({written} bytes, {fmt.name}) to {out}")


def forward_command(
    once: Annotated[
        bool, typer.Option("--once", help="Run one delivery round and exit (for cron).")
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Show each forwarder's cursor and lag, then exit.")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Only this forwarder (default: all enabled).")
    ] = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Forward ledger events to the SIEM destinations of settings.json ("forwarders").

    Without --once it keeps forwarding until interrupted."""
    from chatledger.audit.forward import (
        forward_once,
        forwarder_status,
        load_forwarders,
        start_forwarders,
    )

    with _ledger(data_dir, database) as (settings, ledger):
        configs = load_forwarders(settings.data_dir)
        if name is not None:
            configs = [c for c in configs if c.name == name]
            if not configs:
                raise InvalidInput(f"no forwarder named {name!r} in settings.json")
        if not configs:
            raise fail("no forwarders configured: add 'forwarders' to settings.json", 2)
        if status:
            rows = forwarder_status(ledger, configs, fallback_dir=settings.data_dir)
            if json:
                print_json({"forwarders": rows})
            else:
                for row in rows:
                    state = "enabled" if row["enabled"] else "disabled"
                    error = f"  last error: {row['last_error']}" if row["failures"] else ""
                    print(
                        f"{row['name']} ({row['type']}, {row['format']}, {state}): "
                        f"last_seq {row['last_seq']}, lag {row['lag']}, "
                        f"delivered {row['delivered']}{error}"
                    )
            return
        if once:
            reports = forward_once(ledger, configs, fallback_dir=settings.data_dir)
            if json:
                print_json({"forwarders": [r.to_json() for r in reports]})
            else:
                for report in reports:
                    outcome = "ok" if report.error is None else f"failed: {report.error}"
                    print(
                        f"{report.name}: delivered {report.delivered} events "
                        f"(through seq {report.last_seq}, lag {report.lag}) {outcome}"
                    )
            failed = [r for r in reports if r.error is not None]
            if failed:
                raise fail(f"{len(failed)} forwarder(s) could not deliver: {failed[0].error}")
            return
        stop = threading.Event()
        jobs = start_forwarders(ledger, configs, stop, fallback_dir=settings.data_dir)
        err_console.print(
            f"forwarding to {', '.join(c.name for c in configs if c.enabled)}; Ctrl-C stops",
            markup=False,
        )
        try:
            while any(t.is_alive() for t in jobs.threads):
                stop.wait(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            jobs.join(timeout=15)


def register(app: typer.Typer) -> None:
    """Add ``search``, ``export`` and ``forward`` to the ``chatledger audit`` group."""
    app.command("search")(handle_errors(search_command))
    app.command("export")(handle_errors(export_command))
    app.command("forward")(handle_errors(forward_command))
