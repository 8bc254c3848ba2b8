"""PostgreSQL fixtures: one real server and database per session, a fresh log per test.

The session's server and database come from tests/conftest.py (``pg_server``, ``pg_dbname``:
started, or given through ``CHATLEDGER_TEST_POSTGRES_URL``), shared with the suite's
PostgreSQL backend. Every test here gets a fresh schema in that database, set up by
:func:`setup_roles` exactly as an operator would (tests/pg_backend.py).

``pg_url`` connects as the application role: the ledger tests prove that role is enough.
``pg_admin_url`` is a superuser on the same schema, for the tamper catalogue. Nothing
skips: without a server every test here fails and says why.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatledger.config import Settings
from chatledger.ledger.service import Ledger
from chatledger.runtime import open_ledger
from tests.conftest import LedgerFactory
from tests.pg_backend import APP_PASSWORD, APP_ROLE, OWNER_ROLE, PgDatabase, new_schema
from tests.pg_server import PgServer

__all__ = ["APP_PASSWORD", "APP_ROLE", "OWNER_ROLE", "PgDatabase"]


@pytest.fixture
def pg_database(pg_server: PgServer, pg_dbname: str) -> PgDatabase:
    return new_schema(pg_server, pg_dbname)


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
