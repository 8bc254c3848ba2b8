"""Run the Alembic environment on a connection the caller holds (imported only to migrate).

:func:`upgrade` is what ``sqlite_schema.apply_migrations`` and
``postgres_schema.apply_migrations`` call once they know a migration is due and hold their
backend's migration lock. It lends their DB-API connection to a throwaway SQLAlchemy engine
(a static pool that never closes it), so that Alembic works in the session the caller set up:
PostgreSQL's ``SET ROLE`` and ``search_path``, SQLite's pragmas. The revision files call
:func:`apply_version`; ``env.py`` calls :func:`reconcile` before upgrading.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from chatledger.errors import StorageError
from chatledger.store.migrations import HERE, VERSIONS, file_versions, parse_revision, revision_id

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection, Engine

Dialect = Literal["sqlite", "postgresql"]

_SCHEMA_MODULES = {"sqlite": "sqlite_schema", "postgresql": "postgres_schema"}

APPLIED = "chatledger.applied"
"""Key of ``Config.attributes``: the versions whose SQL ran in this upgrade, in order."""

_REGISTERED_REVISION = '''"""Migration {version}, registered without a revision file of its own."""

from chatledger.store.migrations.runner import apply_version

revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_version({version})


def downgrade() -> None:
    raise NotImplementedError("the schema moves forward only")
'''


def schema_module(dialect: str) -> ModuleType:
    """``chatledger.store.sqlite_schema`` or ``postgres_schema``: MIGRATIONS,
    ``applied_versions(conn)`` and ``apply_one(conn, migration)``."""
    try:
        name = _SCHEMA_MODULES[dialect]
    except KeyError:
        raise StorageError(f"no migrations for the {dialect} dialect") from None
    return importlib.import_module(f"chatledger.store.{name}")


def upgrade(dbapi_connection: Any, dialect: Dialect) -> list[int]:
    """Bring the schema to the head revision; return the versions whose SQL ran.

    ``dbapi_connection`` is idle (no open transaction) and stays open. Errors of the database
    come out as the driver's own exceptions (``sqlite3.Error``, ``psycopg.Error``), not
    SQLAlchemy's wrappers, so that callers handle them as before. The caller holds its
    backend's migration lock; Alembic's ``context`` and ``op`` are process-wide, so one
    upgrade runs at a time in a process.
    """
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

    applied: list[int] = []
    with _ONE_AT_A_TIME:
        script = _scripts(tuple(_registered_without_file(dialect)))
        config = Config()
        config.set_main_option("script_location", str(HERE).replace("%", "%%"))
        engine, restore = _engine(dbapi_connection, dialect)
        try:
            with engine.connect() as connection:
                config.attributes["connection"] = connection
                config.attributes[APPLIED] = applied

                def to_head(revision: Any, _context: MigrationContext) -> Any:
                    # what alembic.command.upgrade does, on the cached script directory
                    return script._upgrade_revs("head", revision)

                with EnvironmentContext(config, script, fn=to_head, destination_rev="head"):
                    script.run_env()
        except DBAPIError as exc:
            if isinstance(exc.orig, Exception):
                raise exc.orig from exc
            raise
        except CommandError as exc:
            raise StorageError(f"cannot migrate the schema: {exc}") from exc
        finally:
            restore()
    return applied


_ONE_AT_A_TIME = threading.Lock()


@functools.lru_cache(maxsize=4)
def _scripts(registered: tuple[int, ...]) -> ScriptDirectory:
    """The revisions (files, and ``registered`` versions without one), loaded once."""
    from alembic.script import ScriptDirectory

    if not registered:
        script = ScriptDirectory(str(HERE))
        script.get_heads()  # loads the revision files now
        return script
    with tempfile.TemporaryDirectory(prefix="chatledger-revisions-") as tmp:
        _write_registered_revisions(Path(tmp), registered)
        script = ScriptDirectory(str(HERE), version_locations=[str(VERSIONS), tmp])
        script.get_heads()  # before the files go
        return script


def _engine(dbapi_connection: Any, dialect: Dialect) -> tuple[Engine, Callable[[], None]]:
    """An engine whose one connection is ``dbapi_connection``; and a function that undoes what
    the engine changed on it."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import StaticPool

    if dialect == "sqlite":
        engine = create_engine("sqlite://", creator=lambda: dbapi_connection, poolclass=StaticPool)
        isolation_level = dbapi_connection.isolation_level

        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(conn: Any, _record: Any) -> None:
            # pysqlite would commit or begin behind SQLAlchemy's back (and never around DDL)
            conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # IMMEDIATE: take the write lock before reading the version table
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        def restore() -> None:
            dbapi_connection.isolation_level = isolation_level

        return engine, restore

    engine = create_engine(
        "postgresql+psycopg://",
        creator=lambda: dbapi_connection,
        poolclass=StaticPool,
        use_native_hstore=False,
    )

    def restore_pg() -> None:
        # SQLAlchemy's psycopg dialect adds a notice handler that logs; the connection goes
        # back to its owner as it came.
        from sqlalchemy.dialects.postgresql import psycopg as sa_psycopg

        handler = getattr(sa_psycopg, "_log_notices", None)
        if handler is not None:
            with contextlib.suppress(ValueError):
                dbapi_connection.remove_notice_handler(handler)

    return engine, restore_pg


def _registered_without_file(dialect: Dialect) -> list[int]:
    """Versions registered for this backend after the last revision file, which get a
    revision written at run time. One registered below it would not fit in the chain."""
    files = file_versions()
    extra = sorted({m.version for m in schema_module(dialect).MIGRATIONS} - set(files))
    misplaced = [v for v in extra if v < files[-1]]
    if misplaced:
        raise StorageError(
            f"migration {misplaced[0]} has no revision file: add "
            f"chatledger/store/migrations/versions/{revision_id(misplaced[0])}_<name>.py"
        )
    return extra


def _write_registered_revisions(directory: Path, versions: tuple[int, ...]) -> None:
    down = revision_id(file_versions()[-1])
    for version in versions:
        revision = revision_id(version)
        source = _REGISTERED_REVISION.format(version=version, revision=revision, down_revision=down)
        (directory / f"{revision}_registered.py").write_text(source)
        down = revision


def dbapi(connection: Connection) -> Any:
    """The driver's connection under a SQLAlchemy connection."""
    return connection.connection.dbapi_connection


def reconcile(context: MigrationContext, script: ScriptDirectory) -> None:
    """Point ``alembic_version`` at the highest revision whose versions are all recorded in
    ``schema_migrations``, in one transaction, when it points elsewhere.

    A database the previous runner migrated has no ``alembic_version``: this stamps it once
    (the adoption). A version recorded out of order, or added later to a revision that was a
    no-op for this backend, moves the pointer back to the revision before it; the upgrade
    that follows applies what is missing and skips what is recorded. A fresh database is left
    alone, and so is one already at or past the head of a newer release.
    """
    connection = context.connection
    assert connection is not None
    schema = schema_module(connection.dialect.name)
    chain = [int(s.revision) for s in reversed(list(script.walk_revisions()))]
    versions = {m.version for m in schema.MIGRATIONS}
    with connection.begin():
        heads = context.get_current_heads()
        numbers = [parse_revision(h) for h in heads]
        if any(n is None or n not in chain for n in numbers):
            raise StorageError(
                f"the database is at schema revision {', '.join(heads)}, which this release "
                "of ChatLedger does not know: upgrade ChatLedger"
            )
        current = max((n for n in numbers if n is not None), default=None)
        recorded: set[int] = schema.applied_versions(dbapi(connection))
        if current is None and not recorded:
            return  # a fresh database
        target: int | None = None  # the highest revision with nothing missing below it
        for version in chain:
            if version in versions and version not in recorded:
                break
            target = version
        if current is None:
            if target is not None:
                context.stamp(script, revision_id(target))  # adopt
        elif target is None:
            context.stamp(script, "base")
        elif current > target:
            context.stamp(script, revision_id(target))


def apply_version(version: int) -> None:
    """A revision's ``upgrade()``: apply this backend's migration ``version`` with its
    ``schema_migrations`` row, inside the revision's transaction; nothing if the backend has
    no such migration or it is recorded already."""
    from alembic import op

    connection = op.get_bind()
    schema = schema_module(connection.dialect.name)
    migration = next((m for m in schema.MIGRATIONS if m.version == version), None)
    if migration is None:
        return
    raw = dbapi(connection)
    if version in schema.applied_versions(raw):
        return
    schema.apply_one(raw, migration)
    config = op.get_context().config
    if config is not None:
        config.attributes.setdefault(APPLIED, []).append(version)
