"""Shared rate limits and anomaly counts on PostgreSQL: UNLOGGED tables the application role
creates itself."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from chatledger.guard.shared_limits import PostgresBuckets
from chatledger.guard.shared_state import PostgresShared
from tests.guard.test_shared_anomaly import check_two_detectors_share_counts
from tests.guard.test_shared_limits import check_two_limiters_share_one_bucket

pytestmark = pytest.mark.postgres


def test_two_limiters_share_one_postgres_bucket(pg_url: str) -> None:
    def connect() -> Any:
        return psycopg.connect(pg_url, autocommit=True)

    check_two_limiters_share_one_bucket(lambda: PostgresBuckets(connect))
    with psycopg.connect(pg_url) as conn:
        kind = conn.execute(
            "SELECT relpersistence FROM pg_class WHERE oid = to_regclass('rate_buckets')"
        ).fetchone()
    assert kind == ("u",)  # unlogged: transient state costs no WAL


def test_two_anomaly_detectors_share_postgres_counts(pg_url: str) -> None:
    def connect() -> Any:
        return psycopg.connect(pg_url, autocommit=True)

    check_two_detectors_share_counts(lambda: PostgresShared(connect))
    with psycopg.connect(pg_url) as conn:
        kinds = conn.execute(
            "SELECT relpersistence FROM pg_class WHERE oid IN"
            " (to_regclass('anomaly_marks'), to_regclass('anomaly_alerts'))"
        ).fetchall()
    assert kinds == [("u",), ("u",)]
