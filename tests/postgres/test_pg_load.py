"""The load test on PostgreSQL: 4 server processes, 100 concurrent clients chatting for 60
seconds; every acknowledged message recorded exactly once; the ledger verifies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.load.test_multiprocess_load import run_load, running_servers

pytestmark = pytest.mark.postgres


@pytest.mark.slow
def test_four_servers_hundred_clients_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    with running_servers(tmp_path, pg_url) as servers:
        turns = run_load(servers, duration=float(os.environ.get("CHATLEDGER_LOAD_SECONDS", "60")))
    assert turns > 0
