"""Routes of the privacy domain (filled in by its module's owner)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
