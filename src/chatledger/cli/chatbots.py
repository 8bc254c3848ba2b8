"""``chatledger chatbots ...``: list chatbots and read their configuration history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from chatledger.chatbots.service import MOMENT_HELP
from chatledger.cli.admin import Workspace, operator
from chatledger.cli.common import (
    DatabaseUrl,
    DataDir,
    JsonFlag,
    handle_errors,
    print_json,
    settings_from,
    shown,
)
from chatledger.platform import Platform

app = typer.Typer(no_args_is_help=True)
ChatbotId = Annotated[str, typer.Argument(help="The chatbot id (bot_...).")]


def _open(data_dir: Path | None, database: str | None) -> Platform:
    return Platform.open(settings_from(data_dir, database))


@app.command("list")
@handle_errors
def list_chatbots(
    workspace: Workspace = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """List the chatbots of a workspace."""
    platform = _open(data_dir, database)
    try:
        bots = platform.chatbots.list_chatbots(operator(platform, workspace), limit=200)
    finally:
        platform.close()
    if json:
        print_json([b.to_json() for b in bots])
        return
    for bot in bots:
        print(f"{bot.id}\tv{bot.config_version}\t{shown(bot.name)}")


@app.command()
@handle_errors
def history(
    chatbot: ChatbotId,
    workspace: Workspace = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """List a chatbot's configuration versions: when, by whom, at which ledger seq."""
    platform = _open(data_dir, database)
    try:
        versions = platform.chatbots.versions(operator(platform, workspace), chatbot)
    finally:
        platform.close()
    if json:
        print_json(versions)
        return
    for v in versions:
        print(
            f"v{v['version']}\t{shown(v['created_at'])}\t{shown(v['actor_id'])}\t"
            f"seq {shown(v['seq'])}"
        )


@app.command()
@handle_errors
def config(
    chatbot: ChatbotId,
    at: Annotated[str, typer.Option(help=f"A past moment: {MOMENT_HELP}.")],
    workspace: Workspace = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = True,
) -> None:
    """Print the configuration in force at a past moment."""
    platform = _open(data_dir, database)
    try:
        version = platform.chatbots.version_at(operator(platform, workspace), chatbot, at)
    finally:
        platform.close()
    print_json(version)


@app.command()
@handle_errors
def diff(
    chatbot: ChatbotId,
    from_: Annotated[int, typer.Option("--from", help="The older version.")],
    to: Annotated[int, typer.Option(help="The newer version.")],
    workspace: Workspace = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Show what changed between two configuration versions."""
    platform = _open(data_dir, database)
    try:
        changes = platform.chatbots.version_diff(operator(platform, workspace), chatbot, from_, to)
    finally:
        platform.close()
    if json:
        print_json(changes)
        return
    for change in changes:
        before = orjson.dumps(change["before"]).decode()
        after = orjson.dumps(change["after"]).decode()
        print(f"{change['path']}: {before} -> {after}")
