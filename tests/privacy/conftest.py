from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chatledger.config import Settings
from chatledger.platform import Platform
from tests.privacy.seed import Seeded, seed


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    opened = Platform.open(Settings.load(tmp_path / "data"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def seeded(platform: Platform) -> Seeded:
    return seed(platform)
