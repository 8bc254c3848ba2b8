"""Shared rate limits and anomaly counts on PostgreSQL: UNLOGGED tables the application role
creates itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from chatledger.guard.shared_limits import PostgresBuckets
from chatledger.guard.shared_state import PostgresShared
from tests.guard.test_shared_anomaly import check_two_detectors_share_counts
from tests.guard.test_shared_limits import check_two_limiters_share_one_bucket

pytestmark = pytest.mark.postgres


def connector(pg_url: str) -> Callable[[], Any]:
    return lambda: psycopg.connect(pg_url, autocommit=True)


def persistence(pg_url: str, *tables: str) -> list[str]:
    """``relpersistence`` of each table ("u": unlogged)."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT relpersistence FROM pg_class WHERE oid = ANY(%s::regclass[])", (list(tables),)
        ).fetchall()
    return [str(kind) for (kind,) in rows]


def test_two_limiters_share_one_postgres_bucket(pg_url: str) -> None:
    check_two_limiters_share_one_bucket(lambda: PostgresBuckets(connector(pg_url)))
    assert persistence(pg_url, "rate_buckets") == ["u"]  # unlogged: transient state, no WAL


def test_two_anomaly_detectors_share_postgres_counts(pg_url: str) -> None:
    check_two_detectors_share_counts(lambda: PostgresShared(connector(pg_url)))
    assert persistence(pg_url, "anomaly_marks", "anomaly_alerts") == ["u", "u"]
