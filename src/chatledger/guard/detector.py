"""The prompt-injection detector: layers in, one :class:`Verdict` out.

Layers, cheapest first: normalisation (disguises undone and reported), rules on the folded
text, structural signals, rules again on text hidden in markup and on decoded payloads
(each hit there weighs a little more: hiding or encoding an instruction is itself a sign),
and the optional embedding layer. Evidence combines by noisy-or over distinct rules,
1 - Π(1 - wᵢ), so independent weak signals add up while no pile of them exceeds 1.
"""

from __future__ import annotations

import threading
from typing import Literal

from chatledger.errors import InvalidInput
from chatledger.guard.embeddings import EmbeddingLayer, load_default_layer
from chatledger.guard.encoded import Decoded, decode_segments
from chatledger.guard.engine import evaluate
from chatledger.guard.markup import hidden_segments
from chatledger.guard.normalize import normalize
from chatledger.guard.rules import RULES, Rule, ruleset_fingerprint
from chatledger.guard.structure import structural_signals
from chatledger.guard.verdict import SOURCES, Match, Source, Verdict, excerpt

DETECTOR_NAME = "chatledger.guard.injection"
RULESET_VERSION = "1.0.0"
DEFAULT_THRESHOLD = 0.5

_HIDDEN_BOOST = 0.1
_ENCODED_BOOST = 0.1
_ENCODED_PRESENCE = 0.15
_MAX_DECODE_DEPTH = 2
_MAX_DECODED = 8
_MAX_MATCHES = 24


def combine(weights: list[float]) -> float:
    """Noisy-or of independent evidence weights, each in 0..1."""
    remaining = 1.0
    for w in weights:
        remaining *= 1.0 - min(max(w, 0.0), 1.0)
    return 1.0 - remaining


class InjectionDetector:
    """Scores user messages and document chunks for prompt injection.

    ``embeddings`` is an :class:`EmbeddingLayer`, ``None`` for rules only, or ``"auto"``
    to use a locally installed model if there is one (resolved on first use).
    """

    name = DETECTOR_NAME

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        embeddings: EmbeddingLayer | Literal["auto"] | None = "auto",
        rules: tuple[Rule, ...] = RULES,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise InvalidInput("threshold must be in (0, 1]", details={"threshold": threshold})
        self.threshold = threshold
        self._rules = rules
        self._embeddings_setting = embeddings
        self._embeddings: EmbeddingLayer | None = None
        self._resolved = embeddings != "auto"
        if isinstance(embeddings, EmbeddingLayer):
            self._embeddings = embeddings
        self._lock = threading.Lock()
        self._fingerprint = ruleset_fingerprint(rules)

    def _embedding_layer(self) -> EmbeddingLayer | None:
        if not self._resolved:
            with self._lock:
                if not self._resolved:
                    self._embeddings = load_default_layer()
                    self._resolved = True
        return self._embeddings

    @property
    def version(self) -> str:
        """Ruleset version plus a digest of the rules (and the embedding model, if any)."""
        layer = self._embedding_layer()
        suffix = f".emb-{layer.name}" if layer is not None else ""
        return f"{RULESET_VERSION}+{self._fingerprint}{suffix}"

    def scan(self, text: str, source: Source = "user") -> Verdict:
        """Score ``text``; ``source`` is ``"user"`` for messages, ``"document"`` for chunks."""
        if source not in SOURCES:
            raise InvalidInput("source must be 'user' or 'document'", details={"source": source})
        if not isinstance(text, str):
            raise InvalidInput("text must be a string")
        matches = self._collect(text, source)
        best: dict[str, float] = {}
        for m in matches:
            best[m.rule_id] = max(best.get(m.rule_id, 0.0), m.weight)
        score = round(combine(list(best.values())), 4)
        matches.sort(key=lambda m: (-m.weight, m.rule_id))
        return Verdict(
            flagged=score >= self.threshold,
            score=score,
            detector=DETECTOR_NAME,
            version=self.version,
            source=source,
            matches=tuple(matches[:_MAX_MATCHES]),
            threshold=self.threshold,
        )

    def _collect(self, text: str, source: Source) -> list[Match]:
        norm = normalize(text)
        folded = norm.text
        lowered = folded.lower()
        matches = list(norm.signals)
        matches += evaluate(folded, source, lowered=lowered, rules=self._rules)
        matches += structural_signals(folded, lowered, source)
        for segment in hidden_segments(folded):
            matches += evaluate(
                segment, source, rules=self._rules, layer="hidden_markup", boost=_HIDDEN_BOOST
            )
        pending = [Decoded("unicode_tags", s) for s in norm.smuggled]
        matches += self._decoded_matches(pending + decode_segments(folded, lowered), source)
        layer = self._embedding_layer()
        if layer is not None:
            hit = layer.scan(folded)
            if hit is not None:
                matches.append(hit)
        return matches

    def _decoded_matches(self, pending: list[Decoded], source: Source) -> list[Match]:
        """Scan decoded payloads, following encodings nested up to two levels deep."""
        matches: list[Match] = []
        depth, budget = 1, _MAX_DECODED
        while pending and budget > 0:
            nested: list[Decoded] = []
            for item in pending[:budget]:
                budget -= 1
                inner = normalize(item.text).text
                if item.encoding != "unicode_tags":  # already reported by normalisation
                    matches.append(
                        Match(
                            f"encoded.{item.encoding}", "encoded", _ENCODED_PRESENCE, excerpt(inner)
                        )
                    )
                matches += evaluate(
                    inner, source, rules=self._rules, layer="encoded", boost=_ENCODED_BOOST
                )
                if depth < _MAX_DECODE_DEPTH:
                    nested += decode_segments(inner)
            pending, depth = nested, depth + 1
        return matches


default_detector = InjectionDetector()


def scan(text: str, source: Source = "user") -> Verdict:
    """Scan with the module's default detector (threshold 0.5, embeddings if installed)."""
    return default_detector.scan(text, source)
