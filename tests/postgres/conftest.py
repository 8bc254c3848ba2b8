"""PostgreSQL fixtures: one real server and database per session, a fresh log per test.

The session starts (or is given, through ``CHATLEDGER_TEST_POSTGRES_URL``) a PostgreSQL 15
server and creates one database. Every test gets a fresh schema in it, set up by
:func:`setup_roles` exactly as an operator would (the owner role owns and migrates the
schema, the application role gets SELECT/INSERT), and URLs whose ``search_path`` select that
schema: one schema is one log, as in a database holding one log per workspace. A schema
costs about 0.1 s where a CREATE DATABASE from a template costs 0.3-0.7 s on this machine.

``pg_url`` connects as the application role: the ledger tests prove that role is enough.
``pg_admin_url`` is a superuser on the same schema, for the tamper catalogue. Nothing
skips: without a server every test here fails and says why.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chatledger.config import Settings
from chatledger.ledger.service import Ledger
from chatledger.runtime import open_ledger
from chatledger.store.postgres_schema import prepare_schema, setup_roles
from tests.conftest import LedgerFactory
from tests.pg_server import PgServer, PostgresUnavailable, start_server

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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = start_server()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_dbname(pg_server: PgServer) -> Iterator[str]:
    """The session's database (dropped at the end, also on a server given by URL), and the
    test roles (cluster-wide) set up on its public schema."""
    name = pg_server.create_database("chatledger_test")
    setup_roles(pg_server.url(name), APP_ROLE, APP_PASSWORD, owner_role=OWNER_ROLE)
    yield name
    pg_server.drop_database(name)


_schemas = itertools.count(1)


@pytest.fixture
def pg_database(pg_server: PgServer, pg_dbname: str) -> PgDatabase:
    schema = f"t{next(_schemas)}"
    with psycopg.connect(pg_server.url(pg_dbname)) as conn:  # the roles exist already
        prepare_schema(conn, APP_ROLE, owner_role=OWNER_ROLE, schema=schema)
    return PgDatabase(
        pg_dbname,
        schema,
        pg_server.url(pg_dbname, user=APP_ROLE, password=APP_PASSWORD, search_path=schema),
        pg_server.url(pg_dbname, search_path=schema),
    )


@pytest.fixture
def pg_url(pg_database: PgDatabase) -> str:
    """A fresh, migrated log (its own schema), as the application role."""
    return pg_database.url


@pytest.fixture
def pg_admin_url(pg_database: PgDatabase) -> str:
    return pg_database.admin_url


@pytest.fixture
def make_ledger(data_dir: Path, pg_url: str) -> Iterator[LedgerFactory]:
    """The shared ledger factory (tests/conftest.py), on PostgreSQL instead of SQLite."""
    opened: list[Ledger] = []

    def factory(**overrides: Any) -> Ledger:
        settings = Settings.load(data_dir, database_url=pg_url)
        for key, value in overrides.items():
            setattr(settings, key, value)
        ledger = open_ledger(settings)
        opened.append(ledger)
        return ledger

    yield factory
    for ledger in opened:
        with contextlib.suppress(Exception):  # already closed by the test
            ledger.close()
