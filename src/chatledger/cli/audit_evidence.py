"""``chatledger audit evidence | verify-evidence | replay``: evidence packs for a dispute, their
offline verification, and a conversation replayed from the ledger."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

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
    verifier_key_argument,
)

KeyOption = Annotated[
    str | None,
    typer.Option(help="The log's verifier key (name+keyid+base64key), or a file holding it."),
]


@handle_errors
def evidence(
    out: Annotated[Path, typer.Option(help="The evidence pack to write (a zip).")],
    conversation: Annotated[
        str | None, typer.Option(help="The conversation the dispute is about.")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="A user or visitor id: everything about that person.")
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Start of a time range (ISO 8601 date or time, UTC)."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(help="End of the time range, inclusive (a bare date is the whole day)."),
    ] = None,
    reason: Annotated[
        str, typer.Option(help="Why the pack is made (kept in the custody record).")
    ] = "",
    exported_by: Annotated[
        str | None,
        typer.Option("--by", help="Who exports, for the custody record (default: cli:OS user)."),
    ] = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Write an evidence pack for a conversation, a subject or a time range (recorded)."""
    from chatledger.audit.evidence import Custodian, EvidenceScope, build_evidence_pack

    scope = EvidenceScope(conversation_id=conversation, subject=subject, start=from_, end=to)
    scope.normalized()  # refuse a bad scope before opening anything
    custodian = Custodian.for_cli(exported_by, reason)
    with opened_ledger(data_dir, database) as ledger:
        result = build_evidence_pack(ledger, scope, custodian, out)
    if json:
        print_json(result.to_json())
    else:
        m = result.manifest
        print(
            f"wrote {out}: pack {result.pack_id}, {m['entries']} entries, "
            f"{m['conversations']} conversations, checkpoint at tree size {m['tree_size']}; "
            f"recorded as seq {result.event_seq}"
        )


@handle_errors
def verify_evidence_cmd(
    file: Annotated[Path, typer.Argument(help="The evidence pack to verify.")],
    key: KeyOption = None,
    json: JsonFlag = False,
) -> None:
    """Verify an evidence pack offline, using nothing but the file and the key."""
    from chatledger.audit.evidence import verify_evidence

    if not file.is_file():
        raise fail(f"no such evidence pack: {file}", 2)
    report = verify_evidence(file, verifier_key_argument(key))
    if json:
        print_json(report.to_json())
    for warning in report.warnings:
        err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)
    if report.error is not None:
        err = report.error
        where = f" at seq {err.seq}" if err.seq is not None else ""
        raise fail(f"evidence verification failed{where}: {err.reason}: {err.message}", 3)
    if not json:
        custody = report.custody
        print(
            f"ok: pack {report.pack_id} of log {report.origin} at size {report.tree_size}: "
            f"{report.entries} entries proven, {report.conversations} conversations, "
            f"{report.payloads_checked} payloads checked, {report.payloads_erased} erased, "
            f"{report.sources_checked} sources checked; exported {custody.get('exported_at')} "
            f"by {custody.get('exported_by', {}).get('id')}"
        )


def _text_transcript(replay: dict[str, Any]) -> str:
    lines = [
        f"conversation {replay['conversation_id']} (chatbot {replay.get('chatbot_id')}, "
        f"channel {replay.get('channel')})",
        f"started {replay.get('started_at')}, ended {replay.get('ended_at') or '-'}, "
        f"resolution {replay.get('resolution')}, outcomes {', '.join(replay['outcome_tags'])}",
        "",
    ]
    if replay.get("warnings"):
        lines += ["WARNING: source texts were altered in the content store after the fact:"]
        lines += [f"  - {w}" for w in replay["warnings"]]
        lines.append("")
    for m in replay["messages"]:
        if m.get("erased"):
            text = f"[erased {m.get('erased_at')} by seq {m.get('erasure_seq')}]"
        else:
            text = str(m.get("text") if m.get("text") is not None else m.get("error", ""))
        lines.append(f"[{m['ts']}] #{m['seq']} {m['role']}: {text}")
        if m["role"] == "assistant" and m.get("id"):
            usage = m.get("usage") or {}
            lines.append(
                f"    model {m.get('provider')}/{m.get('model')}, tokens "
                f"{usage.get('input_tokens')}/{usage.get('output_tokens')}, groundedness "
                f"{m.get('groundedness')}{', unanswered' if m.get('unanswered') else ''}"
            )
            for s in m.get("sources", []):
                mark = "*" if s.get("cited") else " "
                lines.append(
                    f"   {mark}[{s.get('rank')}] {s.get('document_name')} "
                    f"v{s.get('document_version')} score {s.get('score')} ({s.get('chunk_id')})"
                    + _integrity_note(s)
                )
            for fb in m.get("feedback", []):
                lines.append(f"    feedback {fb.get('rating')}: {fb.get('comment') or ''}")
    return "\n".join(lines) + "\n"


def _integrity_note(source: dict[str, Any]) -> str:
    if source.get("integrity") == "tampered":
        return " TAMPERED: text withheld, it does not match the recorded SHA-256"
    if source.get("erased"):
        return " (text erased)"
    return ""


def _for_display(replay: dict[str, Any]) -> dict[str, Any]:
    """A copy of the replay in which a tampered source says so where its text would be (the
    HTML page shows a source's text as given)."""
    messages = []
    for m in replay["messages"]:
        sources = [
            {
                **s,
                "text": "[withheld: altered in the content store; its SHA-256 is "
                f"{s.get('stored_sha256')}, not the {s.get('chunk_sha256')} the ledger recorded]",
            }
            if s.get("integrity") == "tampered"
            else s
            for s in m.get("sources", []) or []
        ]
        messages.append({**m, "sources": sources} if "sources" in m else m)
    return {**replay, "messages": messages}


@handle_errors
def replay(
    conversation_id: Annotated[str, typer.Argument(help="The conversation to replay.")],
    format: Annotated[
        str, typer.Option("--format", help="text, json or html (a self-contained page).")
    ] = "text",
    by: Annotated[str | None, typer.Option(help="Who reads it (recorded as the viewer).")] = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Replay a conversation from the ledger, with its sources as they were (recorded)."""
    import getpass

    from chatledger.audit.evidence_html import render_html
    from chatledger.chat.replay import record_tampering, replay_conversation
    from chatledger.events import Actor, Entity, Event

    chosen = "json" if json else format
    if chosen not in ("text", "json", "html"):
        raise fail("--format must be text, json or html", 2)
    viewer = Actor("user", by or f"cli:{getpass.getuser()}", "operator")
    with opened_ledger(data_dir, database) as ledger:
        result = replay_conversation(ledger, conversation_id)
        ledger.append(
            Event(
                "conversation.view",
                viewer,
                Entity("conversation", conversation_id),
                attributes={
                    "chatbot_id": result.get("chatbot_id") or None,
                    "conversation_id": conversation_id,
                    "via": "cli_replay",
                },
            )
        )
        tamper_seq = record_tampering(ledger, result, viewer, "cli_replay")
    if chosen == "json":
        print_json(result)
    elif chosen == "html":
        custody = {
            "pack_id": "(not an evidence pack: a replay)",
            "exported_at": "",
            "exported_by": {},
            "reason": "",
            "scope": {"conversation_id": conversation_id},
            "tool": {"name": "chatledger", "version": ""},
            "event": {"action": "conversation.view", "seq": ""},
            "ledger": {"origin": "", "tree_size": "", "checkpoint": "", "verifier_key": ""},
        }
        doc = {"conversations": [_for_display(result)], "events": []}
        sys.stdout.write(render_html(doc, custody).decode())
    else:
        sys.stdout.write(_text_transcript(result))
    if result["warnings"]:
        sys.stdout.flush()
        for warning in result["warnings"]:
            err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)
        raise fail(
            f"{len(result['tampered_sources'])} source text(s) do not match the ledger "
            f"(recorded as ledger.tamper_detected, seq {tamper_seq})",
            3,
        )


def register(app: typer.Typer) -> None:
    app.command("evidence")(evidence)
    app.command("verify-evidence")(verify_evidence_cmd)
    app.command("replay")(replay)
