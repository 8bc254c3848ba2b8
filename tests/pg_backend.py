"""Logs on PostgreSQL for the tests, shared by tests/postgres and the suite's PostgreSQL
backend (``pytest --backend postgres``, see tests/conftest.py).

tests/postgres: the session's database gets the test roles once (:func:`setup_roles`); every
test's log is then a fresh schema in it, prepared by :func:`prepare_schema` exactly as an
operator would (the owner role owns and migrates the schema, the application role gets its
grants), and reached through URLs whose ``search_path`` selects that schema: one schema is
one log, as in a database holding one log per workspace.

The suite's backend: one database per data directory, copied from a template database set up
the same way (:class:`DatabasePerDataDir`).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from chatledger.store.postgres_schema import prepare_schema, setup_roles
from tests.pg_server import PgServer

APP_ROLE = "chatledger_test_app"
APP_PASSWORD = "chatledger-test-only"  # a role that exists only on test servers
OWNER_ROLE = "chatledger_test_owner"


@dataclass(frozen=True)
class PgDatabase:
    name: str
    schema: str
    url: str
    """The application role's URL."""
    admin_url: str
    """A superuser's URL on the same database."""


def create_session_database(server: PgServer) -> str:
    """A fresh database with the test roles (cluster-wide) set up on its public schema."""
    name = server.create_database("chatledger_test")
    setup_roles(server.url(name), APP_ROLE, APP_PASSWORD, owner_role=OWNER_ROLE)
    return name


_schemas = itertools.count(1)


def new_schema(server: PgServer, dbname: str) -> PgDatabase:
    """A fresh, migrated log in its own schema of ``dbname`` (whose roles exist already)."""
    schema = f"t{next(_schemas)}"
    with psycopg.connect(server.url(dbname)) as conn:
        prepare_schema(conn, APP_ROLE, owner_role=OWNER_ROLE, schema=schema)
    return PgDatabase(
        dbname,
        schema,
        server.url(dbname, user=APP_ROLE, password=APP_PASSWORD, search_path=schema),
        server.url(dbname, search_path=schema),
    )


class DatabasePerDataDir:
    """The suite's PostgreSQL backend: ``Settings.load(data_dir)`` without a database URL
    gets the application role's URL of a database of its own for each data directory.

    A data directory stands for one embedded database, so the mapping keeps what the tests
    rely on: opening the same directory again (a restart, the CLI after the API) finds the
    same log, and two directories are two independent logs. The database is made on the
    directory's first load, so tests that never open storage cost nothing.

    Each one is a copy (``CREATE DATABASE ... TEMPLATE``) of a template that
    :func:`setup_roles` prepared once, as an operator prepares a database (the owner role
    owns and migrated the public schema, the application role has its grants): about 0.2 s
    where preparing a schema, which runs every migration, takes 0.5-1.5 s on the test
    machine. tests/postgres keeps its schema per test, for what is about schemas.
    """

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self._template: str | None = None
        self._by_dir: dict[Path, str] = {}
        self.made = 0
        """How many data directories got a database."""
        self._lock = threading.Lock()
        # The next database is copied in the background while the tests run: the server
        # does that work on the other core.
        self._maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-databases")
        self._spare: Future[str] | None = None

    def _copy(self) -> str:
        assert self._template is not None
        return self.server.create_database("chatledger_dir", template=self._template)

    def database(self, data_dir: Path) -> str:
        key = data_dir.expanduser().resolve()
        with self._lock:
            found = self._by_dir.get(key)
            if found is None:
                if self._template is None:
                    self._template = create_session_database(self.server)
                found = self._copy() if self._spare is None else self._spare.result()
                self._spare = self._maker.submit(self._copy)
                self._by_dir[key] = found
                self.made += 1
            return found

    def url(self, data_dir: Path) -> str:
        return self.server.url(self.database(data_dir), user=APP_ROLE, password=APP_PASSWORD)

    def close(self, *, drop: bool) -> None:
        """Stop copying; with ``drop``, drop every database made (on a server given by URL:
        a private server is deleted whole)."""
        with self._lock:
            self._maker.shutdown(wait=True)
            names = list(self._by_dir.values())
            if self._spare is not None and self._spare.exception() is None:
                names.append(self._spare.result())
            if self._template is not None:
                names.append(self._template)
            if drop:
                for name in names:
                    self.server.drop_database(name)
            self._by_dir.clear()
            self._spare = self._template = None

    def patched_load(self, original: Callable[..., Any]) -> classmethod[Any, Any, Any]:
        """A replacement for ``Settings.load``: an explicit ``database_url`` is kept, none
        becomes the data directory's database."""

        def load(
            cls: type, data_dir: Path, *, database_url: str | None = None, create: bool = True
        ) -> Any:
            if database_url is None:
                database_url = self.url(data_dir)
            return original(cls, data_dir, database_url=database_url, create=create)

        load.__doc__ = original.__doc__
        return classmethod(load)
