"""``chatledger ledger ...``: append, verify, checkpoint, prove, export, erase."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from chatledger.cli.common import (
    DatabaseUrl,
    DataDir,
    JsonFlag,
    err_console,
    fail,
    handle_errors,
    opened_ledger,
    print_json,
    progress_bar,
    verifier_key_argument,
)
from chatledger.errors import InvalidInput
from chatledger.events import Actor, Entity, Event, Outcome
from chatledger.ledger.bundle import export_bundle, verify_bundle

app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)

_APPEND_CHUNK = 1000


def _read_events() -> list[Event]:
    """Parse every line first, so that one invalid line means nothing is written."""
    events: list[Event] = []
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        if not raw.strip():
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"line {number}: not valid JSON ({exc.msg})") from None
        try:
            events.append(Event.from_json(data))
        except InvalidInput as exc:
            raise InvalidInput(f"line {number}: {exc.message}", details=exc.details) from None
    return events


@app.command()
@handle_errors
def append(data_dir: DataDir = None, database: DatabaseUrl = None, json: JsonFlag = False) -> None:
    """Append events read as JSON Lines on standard input; prints each one's seq."""
    events = _read_events()
    if not events:
        raise fail("no events on standard input", 2)
    with opened_ledger(data_dir, database, create=True) as ledger:
        for start in range(0, len(events), _APPEND_CHUNK):
            for receipt in ledger.append_many(events[start : start + _APPEND_CHUNK]):
                if json:
                    print_json(
                        {
                            "seq": receipt.seq,
                            "id": receipt.id,
                            "ts": receipt.ts,
                            "leaf_hash": receipt.leaf_hash,
                        }
                    )
                else:
                    sys.stdout.write(f"{receipt.seq}\t{receipt.id}\n")


@app.command()
@handle_errors
def verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="A checkpoint held elsewhere that the ledger must extend."),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            help="Processes verifying a large ledger, this one included (0: one per core; "
            "1: this one alone). The report is the same either way.",
            min=0,
            max=64,
        ),
    ] = 0,
    from_seq: Annotated[
        int | None,
        typer.Option(
            "--from",
            help="Check the entries from this seq on, the ones before it archived (the tree "
            "above them is proved by the checkpoints at or after it).",
            min=0,
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Check from where the partitions still attached begin (PostgreSQL, after "
            "detaching the oldest for archiving); 0 when none was detached.",
        ),
    ] = False,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Verify the whole ledger; on failure name the first bad entry and why."""
    if live and from_seq is not None:
        raise fail("give --from or --live, not both", 2)
    external = checkpoint.read_text(encoding="utf-8") if checkpoint else None
    with opened_ledger(data_dir, database) as ledger:
        with progress_bar("verifying") as progress:
            start = ledger.first_live_seq() if live else (from_seq or 0)
            report = ledger.verify(
                external_checkpoint=external, progress=progress, jobs=jobs, start=start
            )
        _record_verification(ledger, report.ok, report.to_json())
    if json:
        print_json(report.to_json())
    first = report.first_problem
    if first is not None:
        where = f"seq {first.seq}" if first.seq is not None else "checkpoint"
        raise fail(f"verification failed at {where}: {first.reason}: {first.message}", 3)
    if not json:
        span = f"{report.size} entries"
        if report.start:
            span = (
                f"{report.size - report.start} entries from seq {report.start} (the ones "
                "before it not checked)"
            )
        print(
            f"ok: {span} verified, root {report.root}, "
            f"{report.checkpoints_checked} checkpoints, {report.payloads_checked} payloads "
            f"checked, {report.payloads_erased} erased"
        )


def _record_verification(ledger: object, ok: bool, summary: dict[str, object]) -> None:
    from chatledger.ledger.service import Ledger

    assert isinstance(ledger, Ledger)
    attrs = {
        "ok": ok,
        "tree_size": summary["tree_size"],
        "first_bad_seq": summary["first_bad_seq"],
        "reason": summary["reason"],
        "from_seq": summary["from_seq"],
    }
    action = "ledger.verify" if ok else "ledger.tamper_detected"
    outcome = Outcome.SUCCESS if ok else Outcome.FAILURE
    try:
        ledger.append(
            Event(
                action,
                Actor("system", "cli"),
                Entity("ledger", ledger.origin),
                outcome,
                None,
                attrs,
            )
        )
    except Exception as exc:  # a broken ledger may refuse appends; the verdict still stands
        err_console.print(f"warning: could not record the verification: {exc}", markup=False)


@app.command("checkpoint")
@handle_errors
def checkpoint_cmd(
    out: Annotated[Path | None, typer.Option(help="Write the checkpoint to this file.")] = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Make a signed checkpoint (C2SP tlog-checkpoint) now; print or write it."""
    with opened_ledger(data_dir, database) as ledger:
        row = ledger.checkpoint()
        ledger.publisher.publish_now(row)
    if out is not None:
        out.write_text(row.note, encoding="utf-8")
    if json:
        print_json(
            {"size": row.size, "ts": row.ts, "note": row.note, "out": str(out) if out else None}
        )
    elif out is None:
        sys.stdout.write(row.note)


@app.command("public-key")
@handle_errors
def public_key(
    data_dir: DataDir = None, database: DatabaseUrl = None, json: JsonFlag = False
) -> None:
    """Print the log's verifier key (name+keyid+base64key)."""
    with opened_ledger(data_dir, database) as ledger:
        key = str(ledger.verifier)
        origin = ledger.origin
    if json:
        print_json({"key": key, "origin": origin})
    else:
        print(key)


@app.command()
@handle_errors
def prove(
    seq: Annotated[int, typer.Argument(help="The entry to prove.", min=0)],
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = True,
) -> None:
    """Print the inclusion proof of entry SEQ as JSON, against a signed checkpoint."""
    with opened_ledger(data_dir, database) as ledger:
        proof = ledger.prove(seq)
    print_json(proof.to_json())


@app.command()
@handle_errors
def export(
    out: Annotated[Path, typer.Option(help="The bundle file to write (a zip).")],
    from_: Annotated[int, typer.Option("--from", help="First seq (inclusive).", min=0)] = 0,
    to: Annotated[int | None, typer.Option(help="Last seq (inclusive).", min=0)] = None,
    no_payloads: Annotated[
        bool, typer.Option("--no-payloads", help="Leave payload contents out of the bundle.")
    ] = False,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Write a self-contained bundle: entries, proofs, a signed checkpoint, the key."""
    with opened_ledger(data_dir, database) as ledger:
        with progress_bar("exporting") as progress:
            manifest = export_bundle(
                ledger,
                out,
                start=from_,
                end=None if to is None else to + 1,
                include_payloads=not no_payloads,
                progress=progress,
            )
        ledger.append(
            Event(
                "ledger.export",
                Actor("system", "cli"),
                Entity("bundle", out.name),
                attributes={
                    "from": manifest["from"],
                    "to": manifest["to"],
                    "tree_size": manifest["tree_size"],
                    "payloads": not no_payloads,
                },
            )
        )
    if json:
        print_json(manifest | {"out": str(out)})
    else:
        print(
            f"wrote {out}: entries {manifest['from']}..{manifest['to']} of {manifest['tree_size']}"
        )


@app.command("verify-bundle")
@handle_errors
def verify_bundle_cmd(
    file: Annotated[Path, typer.Argument(help="The bundle to verify.")],
    key: Annotated[
        str | None, typer.Option(help="The log's verifier key, or a file holding it.")
    ] = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Verify a bundle offline, using nothing but the file and the key.

    (--data-dir and --database are accepted like everywhere, and not used: nothing but the
    bundle and the key is read.)"""
    if not file.is_file():
        raise fail(f"no such bundle: {file}", 2)
    report = verify_bundle(file, verifier_key_argument(key))
    if json:
        print_json(report.to_json())
    for warning in report.warnings:
        err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)
    if report.error is not None:
        err = report.error
        where = f" at seq {err.seq}" if err.seq is not None else ""
        raise fail(f"bundle verification failed{where}: {err.reason}: {err.message}", 3)
    if not json:
        print(
            f"ok: {report.entries} entries ({report.start}..{report.end - 1}) of log "
            f"{report.origin} at size {report.tree_size}; {report.payloads_checked} payloads "
            f"checked, {report.payloads_erased} erased"
        )


@app.command("erase-subject")
@handle_errors
def erase_subject(
    subject: Annotated[str, typer.Argument(help="The data subject (user or visitor id).")],
    reason: Annotated[str, typer.Option(help="Why (for example the request reference).")] = "",
    actor: Annotated[str, typer.Option(help="Who asked for the erasure.")] = "cli",
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Erase a data subject's personal content (refused under legal hold)."""
    from chatledger.chat.erasure import install_on_ledger as install_erasure
    from chatledger.privacy.holds import install_on_ledger

    with opened_ledger(data_dir, database) as ledger:
        install_on_ledger(ledger)
        install_erasure(ledger)  # legal holds refuse the erasure
        receipt = ledger.erase_subject(subject, Actor("user", actor, "operator"), reason=reason)
        record = ledger.read(receipt.seq)
    attrs = record.entry.attributes
    if json:
        print_json(
            {
                "seq": receipt.seq,
                "subject": attrs["subject"],
                "payloads_erased": attrs["payloads_erased"],
                "keys_destroyed": attrs["keys_destroyed"],
            }
        )
    else:
        print(
            f"erased {attrs['payloads_erased']} payloads of {attrs['subject']} "
            f"(erasure recorded as seq {receipt.seq})"
        )
