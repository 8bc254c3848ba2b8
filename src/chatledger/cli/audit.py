"""``chatledger audit ...``: investigation commands, registered by their domains."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    help="Investigate: search, replay, evidence packs, exports.", no_args_is_help=True
)

# Each module defines register(app) and adds its commands to the one `audit` group.
for _name in ("audit_search", "audit_evidence"):
    try:
        importlib.import_module(f"chatledger.cli.{_name}").register(app)
    except ModuleNotFoundError as exc:
        if exc.name != f"chatledger.cli.{_name}":
            raise
