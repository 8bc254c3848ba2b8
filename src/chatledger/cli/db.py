"""``chatledger db upgrade``: apply pending schema migrations."""

from __future__ import annotations

import typer

from chatledger.cli.common import (
    DatabaseUrl,
    DataDir,
    JsonFlag,
    handle_errors,
    print_json,
    settings_from,
)
from chatledger.errors import StorageError

app = typer.Typer(no_args_is_help=True)


@app.command()
@handle_errors
def upgrade(data_dir: DataDir = None, database: DatabaseUrl = None, json: JsonFlag = False) -> None:
    """Apply pending migrations (each with its record, in one transaction).

    On PostgreSQL, run it with the owner role's URL: the application role has no right to
    change the schema (see docs/operations.md)."""
    settings = settings_from(data_dir, database)
    if settings.database_url:
        import psycopg

        from chatledger.store.postgres_schema import apply_migrations

        try:
            with psycopg.connect(settings.database_url) as conn:
                applied = apply_migrations(conn)
        except psycopg.Error as exc:
            raise StorageError(f"cannot migrate: {exc}") from None
    else:
        from chatledger.store.sqlite import connect
        from chatledger.store.sqlite_schema import apply_migrations as apply_sqlite

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        lite = connect(settings.database_path)
        try:
            applied = apply_sqlite(lite)
        finally:
            lite.close()
    if json:
        print_json({"applied": applied})
    else:
        print(f"applied migrations: {', '.join(map(str, applied)) if applied else 'none pending'}")
