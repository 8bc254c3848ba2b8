"""The root of the ``chatledger`` command."""

from __future__ import annotations

import typer

from chatledger.cli import admin, ledger, server

app = typer.Typer(
    help="ChatLedger: a RAG chatbot platform with a tamper-evident audit ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(ledger.app, name="ledger")
app.add_typer(admin.users_app, name="users")
app.add_typer(admin.keys_app, name="keys")
app.command()(server.serve)
app.command()(server.demo)


def _register_optional() -> None:
    try:
        from chatledger.cli import guard
    except ImportError:  # pragma: no cover - the guard ships with the package
        return
    app.add_typer(guard.app, name="guard", help="The prompt-injection guard.")


_register_optional()


def main() -> None:
    app()
