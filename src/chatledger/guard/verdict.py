"""The result types every guard layer produces: :class:`Match` and :class:`Verdict`.

A verdict is what the ledger records for each scanned text, so it is immutable and carries
the detector's name and version: months later an auditor must be able to tell which rules
made a decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Source = Literal["user", "document"]
Layer = Literal["rules", "normalization", "hidden_markup", "encoded", "embedding"]

SOURCES: tuple[Source, ...] = ("user", "document")
EXCERPT_MAX = 80


def excerpt(text: str, start: int = 0, end: int | None = None) -> str:
    """A single-line slice of ``text`` of at most :data:`EXCERPT_MAX` characters."""
    piece = " ".join(text[start:end].split())
    if len(piece) > EXCERPT_MAX:
        piece = piece[: EXCERPT_MAX - 1] + "…"
    return piece


@dataclass(frozen=True, slots=True)
class Match:
    """One piece of evidence: which rule fired, in which layer, how strongly, on what."""

    rule_id: str
    layer: Layer
    weight: float
    excerpt: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "layer": self.layer,
            "weight": self.weight,
            "excerpt": self.excerpt,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The detector's decision on one text: ``score`` in 0..1, flagged if ≥ ``threshold``."""

    flagged: bool
    score: float
    detector: str
    version: str
    source: Source
    matches: tuple[Match, ...]
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "score": self.score,
            "detector": self.detector,
            "version": self.version,
            "source": self.source,
            "threshold": self.threshold,
            "matches": [m.to_dict() for m in self.matches],
        }
