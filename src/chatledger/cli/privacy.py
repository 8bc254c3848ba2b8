"""``chatledger privacy ...``: retention policies and expiry, legal holds, data-subject erasure."""

from __future__ import annotations

import getpass
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
    shown,
)
from chatledger.events import Actor

app = typer.Typer(
    help="Retention policies, legal holds, data-subject erasure.", no_args_is_help=True
)
retention_app = typer.Typer(help="Retention policies and the expiry job.", no_args_is_help=True)
hold_app = typer.Typer(help="Legal holds (suspend expiry and erasure).", no_args_is_help=True)
app.add_typer(retention_app, name="retention")
app.add_typer(hold_app, name="hold")

By = Annotated[
    str | None, typer.Option("--by", help="Who does this, for the record (default: cli:OS user).")
]
Chatbot = Annotated[
    str | None, typer.Option("--chatbot", help="A chatbot id (default: every chatbot).")
]


def _actor(by: str | None) -> Actor:
    return Actor("user", by or f"cli:{getpass.getuser()}", "operator")


def _days(text: str) -> tuple[int | None, bool]:
    """``forever``, ``default`` (remove the override) or a number of days."""
    value = text.strip().lower()
    if value in ("forever", "none", "never"):
        return None, False
    if value in ("default", "inherit", "reset"):
        return None, True
    if value.isdigit():
        return int(value), False
    raise fail("DAYS must be a number of days, 'forever' or 'default'", 2)


def _print_rows(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [{c: shown(r.get(c)) for c in columns} for r in rows]
    widths = {c: max(len(c), *(len(cell[c]) for cell in cells)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for cell in cells:
        print("  ".join(cell[c].ljust(widths[c]) for c in columns).rstrip())


# -- retention ---------------------------------------------------------------------------------


@retention_app.command("show")
@handle_errors
def retention_show(
    chatbot: Chatbot = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """The retention policy in force for each rule (for one chatbot, or for all)."""
    from chatledger.privacy.retention import RULES, policies

    with opened_ledger(data_dir, database) as ledger:
        found = policies(ledger)
    effective = [p.to_json() | {"applies_to": RULES[p.rule]} for p in found.effective(chatbot)]
    overrides = [p.to_json() for p in found.chatbot_overrides()]
    if json:
        print_json({"chatbot_id": chatbot, "policies": effective, "chatbot_overrides": overrides})
        return
    for row in effective:
        row["days"] = "forever" if row["days"] is None else row["days"]
    _print_rows(effective, ["rule", "days", "source", "updated_at", "applies_to"])
    if overrides and chatbot is None:
        print("\nchatbot overrides:")
        _print_rows(overrides, ["chatbot_id", "rule", "days", "updated_at"])


@retention_app.command("set")
@handle_errors
def retention_set(
    rule: Annotated[str, typer.Argument(help="A category (security, message, ...) or 'ip'.")],
    days: Annotated[str, typer.Argument(help="Days to keep, 'forever', or 'default'.")],
    chatbot: Chatbot = None,
    by: By = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Set a retention policy (recorded as retention.update with before and after)."""
    from chatledger.privacy.retention import set_policy

    value, reset = _days(days)
    with opened_ledger(data_dir, database) as ledger:
        result = set_policy(ledger, _actor(by), rule, value, chatbot_id=chatbot, reset=reset)
    if json:
        print_json(result)
        return
    before, after = result["before"], result["after"]
    print(
        f"{rule}{' for ' + chatbot if chatbot else ''}: {before['days'] or 'forever'} "
        f"({before['source']}) -> {after['days'] or 'forever'} ({after['source']}); "
        f"recorded as seq {result['seq']}"
    )


@retention_app.command("run")
@handle_errors
def retention_run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be erased.")
    ] = False,
    limit: Annotated[int, typer.Option(help="List at most this many items.", min=0)] = 1000,
    by: By = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Erase the payloads past their retention (never entries); with --dry-run, list them."""
    from chatledger.privacy.holds import install_on_ledger
    from chatledger.privacy.retention import run_expiry

    with opened_ledger(data_dir, database) as ledger:
        install_on_ledger(ledger)
        report = run_expiry(ledger, _actor(by), dry_run=dry_run)
    data = report.to_json(limit=limit)
    if json:
        print_json(data)
        return
    rows = data["items"]
    _print_rows(rows, ["seq", "ts", "action", "rule", "days", "chatbot_id", "conversation_id"])
    verb = "would erase" if dry_run else "erased"
    count = data["expired"] if dry_run else data["erased"]
    rules = ", ".join(f"{k}: {v}" for k, v in data["by_rule"].items()) or "nothing due"
    held = f"; {data['held']} kept under legal hold" if data["held"] else ""
    recorded = f"; recorded as seq {', '.join(map(str, data['event_seqs']))}" if not dry_run else ""
    documents = data["documents"]
    blobs = documents["blobs"] if dry_run else documents["blobs_erased"]
    content = f"; {blobs} document blobs of {documents['versions']} old versions" if blobs else ""
    print(f"{verb} {count} payloads ({rules}){content}{held}{recorded}", file=sys.stderr)


# -- holds -------------------------------------------------------------------------------------


@hold_app.command("place")
@handle_errors
def hold_place(
    reason: Annotated[str, typer.Option(help="Why (the matter, the order).")],
    conversation: Annotated[str | None, typer.Option(help="Hold one conversation.")] = None,
    subject: Annotated[
        str | None, typer.Option(help="Hold everything about a user or visitor id.")
    ] = None,
    chatbot: Annotated[str | None, typer.Option(help="Hold everything of a chatbot.")] = None,
    reference: Annotated[str | None, typer.Option(help="A case or ticket reference.")] = None,
    by: By = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Place a legal hold: expiry and erasure of what it covers stop until it is released."""
    from chatledger.privacy.holds import place_hold

    given = [(t, v) for t, v in (("conversation", conversation), ("subject", subject)) if v]
    if chatbot:
        given.append(("chatbot", chatbot))
    if len(given) != 1:
        raise fail("give exactly one of --conversation, --subject, --chatbot", 2)
    scope_type, target = given[0]
    with opened_ledger(data_dir, database) as ledger:
        hold = place_hold(
            ledger,
            _actor(by),
            scope_type=scope_type,
            target=target,
            reason=reason,
            reference=reference,
        )
    if json:
        print_json(hold.to_json())
    else:
        print(f"{hold.id}: hold on {scope_type} {hold.scope_id} (seq {hold.placed_seq})")


@hold_app.command("release")
@handle_errors
def hold_release(
    hold_id: Annotated[str, typer.Argument(help="The hold to release.")],
    reason: Annotated[str, typer.Option(help="Why it is released.")],
    by: By = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Release a legal hold (recorded as privacy.hold_released)."""
    from chatledger.privacy.holds import release_hold

    with opened_ledger(data_dir, database) as ledger:
        hold = release_hold(ledger, _actor(by), hold_id, reason)
    if json:
        print_json(hold.to_json())
    else:
        print(f"{hold.id}: released (seq {hold.released_seq})")


@hold_app.command("list")
@handle_errors
def hold_list(
    status: Annotated[str, typer.Option(help="active, released or all.")] = "active",
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """List legal holds."""
    from chatledger.privacy.holds import list_holds

    items: list[dict[str, Any]] = []
    with opened_ledger(data_dir, database) as ledger:
        after: str | None = None
        while True:
            page = list_holds(ledger, status=status, after=after, limit=500)
            items += [h.to_json() for h in page]
            if len(page) < 500:
                break
            after = page[-1].id
    if json:
        print_json({"items": items})
    else:
        _print_rows(
            items, ["id", "scope_type", "scope_id", "placed_at", "placed_by", "active", "reason"]
        )


# -- erasure -----------------------------------------------------------------------------------


@app.command("erase")
@handle_errors
def erase(
    subject: Annotated[str, typer.Argument(help="The data subject (user or visitor id).")],
    reason: Annotated[str, typer.Option(help="Why (for example the request reference).")] = "",
    by: By = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Erase a data subject's personal content (GDPR art. 17); refused under legal hold."""
    from chatledger.chat.erasure import install_on_ledger as install_erasure
    from chatledger.privacy.holds import install_on_ledger

    with opened_ledger(data_dir, database) as ledger:
        install_on_ledger(ledger)
        install_erasure(ledger)
        receipt = ledger.erase_subject(subject, _actor(by), reason=reason)
        attrs = ledger.read(receipt.seq).entry.attributes
    result = {
        "seq": receipt.seq,
        "subject": attrs["subject"],
        "payloads_erased": attrs["payloads_erased"],
        "keys_destroyed": attrs["keys_destroyed"],
    }
    if json:
        print_json(result)
    else:
        print(
            f"erased {result['payloads_erased']} payloads of {result['subject']} "
            f"(erasure recorded as seq {receipt.seq})"
        )
