"""``chatledger integrations ...``: the SDK's local buffer, from the command line."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Annotated

import typer

from chatledger.cli.common import JsonFlag, fail, print_json
from chatledger.client.ids import ledger_conversation_id
from chatledger.client.spool import SPOOL_FILE

app = typer.Typer(help="Ingest from chatbots built elsewhere.", no_args_is_help=True)

SpoolDir = Annotated[Path, typer.Argument(help="The spool_dir the application's client uses.")]


@app.command("spool")
def spool_status(spool_dir: SpoolDir, json: JsonFlag = False) -> None:
    """How many records wait in an SDK spool, and which the server refused for good."""
    path = spool_dir / SPOOL_FILE
    if not path.is_file():
        raise fail(f"no spool at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        waiting, size, oldest = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0), MIN(created) FROM spool"
        ).fetchone()
        acked = conn.execute("SELECT COUNT(*) FROM acked").fetchone()[0]
        rejected = conn.execute("SELECT key, code, message FROM rejected ORDER BY at").fetchall()
    finally:
        conn.close()
    status = {
        "spool": str(path),
        "waiting": waiting,
        "waiting_bytes": size,
        "oldest_waiting_unix": oldest,
        "acknowledged_kept": acked,
        "rejected": [{"key": k, "code": c, "message": m} for k, c, m in rejected],
    }
    if json:
        print_json(status)
        return
    typer.echo(f"{waiting} records waiting ({size} bytes), {acked} acknowledged kept")
    for key, code, message in rejected:
        typer.echo(f"rejected {key}: {code}: {message}")


@app.command("send")
def send_spool(
    spool_dir: SpoolDir,
    url: Annotated[str, typer.Option("--url", help="The ChatLedger server.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to keep trying.")] = 60.0,
) -> None:
    """Deliver what an application left in its spool (the key from CHATLEDGER_API_KEY)."""
    from chatledger.client import FlushTimeout, LedgerClient

    key = os.environ.get("CHATLEDGER_API_KEY", "")
    if not key:
        raise fail("set CHATLEDGER_API_KEY to an API key with the chat permission")
    client = LedgerClient(url, key, spool_dir=spool_dir, backoff_max=5.0)
    try:
        waiting = client.buffered
        client.flush(timeout)
    except FlushTimeout as exc:
        raise fail(str(exc)) from None
    finally:
        client.close(flush=False)
    typer.echo(f"{waiting} records delivered")


@app.command("conversation-id")
def conversation_id(
    chatbot_id: Annotated[str, typer.Argument(help="The chatbot (bot_...).")],
    external_id: Annotated[str, typer.Argument(help="The application's conversation id.")],
) -> None:
    """The ledger's conversation id for an application's conversation id."""
    typer.echo(ledger_conversation_id(chatbot_id, external_id))
