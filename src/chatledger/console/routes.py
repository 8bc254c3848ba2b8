"""Mounts the console's pages and static files on the app."""

from __future__ import annotations

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the console routes (none yet)."""
