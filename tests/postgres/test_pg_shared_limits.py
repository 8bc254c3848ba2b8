"""Shared rate limits on PostgreSQL: an UNLOGGED table the application role creates itself."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from chatledger.guard.shared_limits import PostgresBuckets
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
