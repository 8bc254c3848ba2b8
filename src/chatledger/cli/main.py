"""The root of the ``chatledger`` command."""

from __future__ import annotations

from typing import Annotated

import typer

from chatledger.cli import admin, audit, ledger, server

app = typer.Typer(
    help="ChatLedger: a RAG chatbot platform with a tamper-evident audit ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from chatledger import __version__

        typer.echo(f"chatledger {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """ChatLedger: a RAG chatbot platform with a tamper-evident audit ledger."""


app.add_typer(ledger.app, name="ledger")
app.add_typer(admin.users_app, name="users")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(audit.app, name="audit")
app.command()(server.serve)
app.command()(server.demo)


def _register_domains() -> None:
    """Command groups owned by other domains: each module exports a Typer ``app``."""
    import importlib

    for module, name, help_text in (
        ("guard", "guard", "The prompt-injection guard."),
        ("privacy", "privacy", "Retention policies, legal holds, data-subject erasure."),
        ("analytics", "analytics", "Unanswered questions, feedback, outcomes, security trends."),
        ("chatbots", "chatbots", "Chatbots and their configuration history."),
        ("integrations", "integrations", "Ingest from chatbots built elsewhere."),
        ("db", "db", "The database schema."),
    ):
        try:
            sub = importlib.import_module(f"chatledger.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"chatledger.cli.{module}":
                raise
            continue
        app.add_typer(sub.app, name=name, help=help_text)


_register_domains()


def main() -> None:
    app()
