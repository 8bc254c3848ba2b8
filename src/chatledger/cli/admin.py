"""``chatledger users ...`` and ``chatledger keys ...``: operators manage identities."""

from __future__ import annotations

import secrets
import sys
from typing import Annotated

import typer

from chatledger.cli.common import (
    DatabaseUrl,
    DataDir,
    JsonFlag,
    handle_errors,
    print_json,
    settings_from,
    shown,
)
from chatledger.events import Actor
from chatledger.identity.principal import Principal, system_principal
from chatledger.identity.service import KEY_PREFIX, split_key_reference
from chatledger.platform import Platform

users_app = typer.Typer(help="Users of the console and the API.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)

CLI_ACTOR = Actor("system", "cli", "owner")
Workspace = Annotated[str | None, typer.Option(help="Workspace id (default: the first).")]
ExpiresIn = Annotated[int | None, typer.Option(help="Expire after this many days.")]


def default_workspace(platform: Platform, workspace: str | None) -> str:
    """The workspace named (which must exist), or the first one (created on first use)."""
    if workspace is not None:
        return str(platform.identity.workspace(workspace)["id"])
    existing = platform.identity.workspaces()
    if existing:
        return str(existing[0]["id"])
    return platform.identity.create_workspace("Default workspace", CLI_ACTOR)


def operator(platform: Platform, workspace: str | None) -> Principal:
    return system_principal(default_workspace(platform, workspace))


@users_app.command("create")
@handle_errors
def create_user(
    email: Annotated[str, typer.Option(help="The user's email (their login).")],
    role: Annotated[str, typer.Option(help="owner, admin, editor, auditor, agent or viewer.")],
    workspace: Workspace = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Create a user; the password is read from standard input, or generated and printed."""
    given = "" if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    password = given or secrets.token_urlsafe(15)
    platform = Platform.open(settings_from(data_dir, database, create=True))
    try:
        user_id = platform.identity.create_user(
            operator(platform, workspace), email=email, password=password, role=role
        )
    finally:
        platform.close()
    result = {"id": user_id, "email": email.strip().lower(), "role": role}
    if not given:
        result["password"] = password
    if json:
        print_json(result)
    else:
        print(f"created user {user_id} ({result['email']}, {role})")
        if not given:
            print(f"password: {password}")


@keys_app.command("create")
@handle_errors
def create_key(
    role: Annotated[str, typer.Option(help="owner, admin, editor, auditor, agent or viewer.")],
    workspace: Workspace = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    expires_in_days: ExpiresIn = None,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Create an API key and print it once."""
    platform = Platform.open(settings_from(data_dir, database))
    try:
        token, info = platform.identity.create_api_key(
            operator(platform, workspace), role=role, name=name, expires_in_days=expires_in_days
        )
    finally:
        platform.close()
    if json:
        print_json({"key": token, **info.to_json()})
    else:
        print(token)


@keys_app.command("revoke")
@handle_errors
def revoke_key(
    key: Annotated[
        str,
        typer.Argument(
            metavar="KEY",
            help="The key id (clk_ and 16 hex digits, or just the digits) or the whole key "
            "(its secret is then checked, and never printed).",
        ),
    ],
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    json: JsonFlag = False,
) -> None:
    """Revoke an API key."""
    key_id, _ = split_key_reference(key)
    platform = Platform.open(settings_from(data_dir, database))
    try:
        info = platform.identity.api_key(key_id)
        result = platform.identity.revoke_api_key(system_principal(info.workspace_id), key)
    finally:
        platform.close()
    if json:
        print_json(result.to_json())
    else:
        print(
            f"revoked {KEY_PREFIX}{result.id} ({result.role}, workspace {result.workspace_id}, "
            f"revoked at {shown(result.revoked_at)})"
        )
