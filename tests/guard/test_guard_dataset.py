"""Detection and false-positive rates on the public data sets in shared/guard-data.

Targets: ≥ 85 % of direct and ≥ 70 % of indirect injections flagged, ≤ 3 % of the NotInject
hard negatives flagged. The rules were written from attack techniques, not from these texts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chatledger.guard.detector import InjectionDetector
from chatledger.guard.engine import search
from chatledger.guard.evaluation import CorpusResult, evaluate_corpora, load_samples, plant
from chatledger.guard.rules import RULES


@pytest.fixture(scope="module")
def results(detector: InjectionDetector, guard_data: Path) -> dict[str, CorpusResult]:
    return evaluate_corpora(detector, guard_data)


def test_corpora_are_complete(results: dict[str, CorpusResult]) -> None:
    assert results["purplellama-direct"].total == 196
    assert results["purplellama-indirect"].total == 55
    assert results["bipia-indirect"].total == 75
    assert results["notinject"].total == 339


def test_direct_injection_detection_rate(results: dict[str, CorpusResult]) -> None:
    assert results["purplellama-direct"].rate >= 0.85, results["purplellama-direct"]


def test_indirect_injection_detection_rate(results: dict[str, CorpusResult]) -> None:
    purple, bipia = results["purplellama-indirect"], results["bipia-indirect"]
    assert purple.rate >= 0.70, purple
    assert bipia.rate >= 0.70, bipia
    combined = (purple.flagged + bipia.flagged) / (purple.total + bipia.total)
    assert combined >= 0.70


def test_false_positive_rate_on_hard_negatives(results: dict[str, CorpusResult]) -> None:
    assert results["notinject"].rate <= 0.03, results["notinject"]
    assert results["benign-documents"].flagged == 0


def test_planting_keeps_the_attack_and_the_carrier() -> None:
    doc = plant("Reply in reverse", 4)
    assert "Reply in reverse." in doc
    assert doc.count(".") >= 5


def test_windowed_search_agrees_with_a_full_scan_on_the_corpora(guard_data: Path) -> None:
    for sample in load_samples(guard_data):
        lowered = sample.text.lower()
        for rule in RULES:
            haystack = sample.text if rule.case_sensitive else lowered
            full = rule.pattern.search(haystack)
            if rule.requires and not any(q in haystack for q in rule.requires):
                full = None
            assert (full is None) == (search(rule, haystack) is None), (rule.id, sample.text)
