"""Shared fixtures for the guard tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatledger.guard.detector import InjectionDetector

GUARD_DATA = Path(__file__).resolve().parents[1] / "data" / "guard-data"


@pytest.fixture(scope="session")
def detector() -> InjectionDetector:
    """Rules only: the tests must not depend on whether an embedding model is installed."""
    return InjectionDetector(embeddings=None)


@pytest.fixture(scope="session")
def guard_data() -> Path:
    if not (GUARD_DATA / "purplellama-prompt-injection.json").is_file():
        pytest.fail(f"guard data set missing from {GUARD_DATA} (a copy of shared/guard-data)")
    return GUARD_DATA
