"""``chatledger db upgrade``: apply pending schema migrations; ``chatledger db partitions``:
the PostgreSQL ledger's partitions (create the next ones, detach and attach archived ones)."""

from __future__ import annotations

from typing import Annotated

import typer

from chatledger.cli.common import (
    DatabaseUrl,
    DataDir,
    JsonFlag,
    handle_errors,
    print_json,
    settings_from,
)
from chatledger.errors import InvalidInput, StorageError

app = typer.Typer(no_args_is_help=True)


@app.command()
@handle_errors
def upgrade(data_dir: DataDir = None, database: DatabaseUrl = None, json: JsonFlag = False) -> None:
    """Apply pending migrations (each with its record, in one transaction).

    On PostgreSQL, run it with the owner role's URL: the application role has no right to
    change the schema (see docs/operations.md)."""
    settings = settings_from(data_dir, database, create=True)
    created: list[str] | None = None
    if settings.database_url:
        import psycopg

        from chatledger.store.pg_partitions import ensure_partitions, may_maintain
        from chatledger.store.postgres_schema import apply_migrations

        try:
            with psycopg.connect(settings.database_url) as conn:
                applied = apply_migrations(conn)
                if may_maintain(conn):  # the partitions ahead of the head: the owner's job
                    report = ensure_partitions(conn)
                    created = [*report.promoted, *report.created]
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
        extra = {} if created is None else {"partitions_created": created}
        print_json({"applied": applied, **extra})
    else:
        print(f"applied migrations: {', '.join(map(str, applied)) if applied else 'none pending'}")
        if created:
            print(f"created partitions: {', '.join(created)}")


Ahead = Annotated[
    int,
    typer.Option("--ahead", min=0, help="Empty partitions to keep after the head's one."),
]
Detach = Annotated[
    str | None,
    typer.Option(
        "--detach",
        metavar="PARTITION",
        help="Detach this partition (the oldest attached one, full, covered by a stored "
        "checkpoint) for archiving: its entries table, payloads table or first seq.",
    ),
]
Attach = Annotated[
    str | None,
    typer.Option(
        "--attach",
        metavar="PARTITION",
        help="Attach a detached partition again (its tables restored from the archive).",
    ),
]
LockTimeout = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        min=0.1,
        help="Seconds to wait for the ledger tables before giving up (run it again later).",
    ),
]


@app.command()
@handle_errors
def partitions(
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    ahead: Ahead = 2,
    detach: Detach = None,
    attach: Attach = None,
    lock_timeout: LockTimeout = 10.0,
    json: JsonFlag = False,
) -> None:
    """Create the ledger's next partitions and print the catalogue (PostgreSQL only).

    Run it regularly (daily, say) with the owner role's URL: it keeps --ahead empty
    partitions after the one the head is in, moves rows that reached the overflow partition
    into a partition of their own, and records each partition's seq and time range and the
    checkpoint that covers it. See "Partitioning the ledger tables by time" in
    docs/operations.md for archiving with --detach."""
    settings = settings_from(data_dir, database)
    if not settings.database_url:
        raise InvalidInput("partitions are PostgreSQL's: pass --database (the owner's URL)")
    if detach and attach:
        raise InvalidInput("--detach and --attach go one at a time")
    import psycopg

    from chatledger.store.pg_partitions import (
        attach_partition,
        catalogue,
        describe,
        detach_partition,
        ensure_partitions,
    )

    try:
        with psycopg.connect(settings.database_url) as conn:
            report = ensure_partitions(conn, ahead, lock_timeout=lock_timeout)
            if not report.partitioned:
                raise StorageError(
                    "the ledger tables are not partitioned yet: run `chatledger db upgrade` "
                    "with the owner's URL (migration 14)"
                )
            changed = None
            if detach:
                changed = detach_partition(conn, detach, lock_timeout=lock_timeout)
            elif attach:
                changed = attach_partition(conn, attach, lock_timeout=lock_timeout)
            if changed is not None:
                report.partitions = catalogue(conn)
                conn.rollback()
    except psycopg.Error as exc:
        raise StorageError(f"partition maintenance failed: {exc}") from None
    if json:
        out = report.to_json()
        if detach and changed is not None:
            out["detached"] = changed.to_json()
        if attach and changed is not None:
            out["attached"] = changed.to_json()
        print_json(out)
        return
    print(
        f"partition size {report.partition_size}, head {report.head}, overflow partition "
        f"from seq {report.overflow_first_seq}"
    )
    for name in report.promoted:
        print(f"moved the overflow partition's rows into {name}")
    if report.created:
        print(f"created partitions: {', '.join(report.created)}")
    if changed is not None:
        print(
            f"{'detached' if detach else 'attached'} {changed.entries_table}, "
            f"{changed.payloads_table}"
        )
    for line in describe(report.partitions):
        print(line)
