"""Docs that cannot rot: the CLI and API references match the code."""

from __future__ import annotations

from pathlib import Path

from chatledger.cli.reference import render_cli_reference

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_cli_reference_is_current() -> None:
    expected = render_cli_reference()
    assert (DOCS / "cli.md").read_text() == expected, (
        "docs/cli.md is stale: run python -m chatledger.cli.reference > docs/cli.md"
    )


def test_api_reference_names_every_route(tmp_path: Path) -> None:
    from chatledger.api.app import create_app
    from chatledger.api.reference import render_api_reference
    from chatledger.config import Settings
    from chatledger.platform import Platform

    platform = Platform.open(Settings.load(tmp_path / "data"))
    try:
        expected = render_api_reference(create_app(platform))
    finally:
        platform.close()
    assert (DOCS / "api.md").read_text() == expected, (
        "docs/api.md is stale: run python -m chatledger.api.reference > docs/api.md"
    )
