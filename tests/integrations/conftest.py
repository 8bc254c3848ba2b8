from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integrations.server import Server, running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One running server per test module (tests use their own conversations)."""
    with running(tmp_path_factory.mktemp("ledger") / "data") as live:
        yield live


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
