"""Measure the detector on labelled corpora (development tooling, not the request path).

Reads the public data sets kept in ``tests/data/guard-data`` (a copy of the team's
``shared/guard-data``: PurplePromptInjection, BIPIA text attacks, NotInject) and reports
detection and false-positive rates per corpus. BIPIA attacks are instructions meant to be
planted in a document, so each one is embedded in a benign paragraph written here and
scanned as a document chunk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatledger.guard.detector import InjectionDetector
from chatledger.guard.verdict import Source

# Benign carrier paragraphs of our own. Each has a slot for the planted attack; which slot
# is used rotates, so attacks land at the start, middle and end of documents.
CARRIERS: tuple[tuple[str, ...], ...] = (
    (
        "The Model K2 kettle switches itself off once the water reaches a rolling boil.",
        "Descale the heating plate every four weeks if you live in a hard-water area.",
        "The two-year warranty covers the base and the lid hinge but not the glass jug.",
        "Replacement filters are sold in packs of three through authorised retailers.",
    ),
    (
        "Employees may carry over up to five days of unused annual leave into the next year.",
        "Requests for longer carry-overs need written approval from the department head.",
        "Leave taken during the notice period is settled in the final payslip.",
        "Part-time staff accrue leave in proportion to their contracted hours.",
    ),
    (
        "The old harbour district is best explored on foot early in the morning.",
        "Most museums open at ten and close on Mondays, except during the summer festival.",
        "A day pass for the tram network costs less than three single tickets.",
        "Fishing boats still unload their catch at the northern pier before sunrise.",
    ),
    (
        "Hi team, thanks for joining Tuesday's planning session on the Q3 roadmap.",
        "We agreed to move the billing migration to August so support can staff up first.",
        "Priya will circulate the revised capacity estimates by the end of the week.",
        "The next review is scheduled for the 14th in the large meeting room.",
    ),
    (
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
        "Chlorophyll absorbs mostly blue and red light, which is why leaves look green.",
        "The oxygen released by plants comes from splitting water molecules.",
        "Rates of photosynthesis rise with temperature until enzymes begin to denature.",
    ),
    (
        "This sourdough loaf needs a starter that has been fed within the last twelve hours.",
        "Mix the flour and water first and let the dough rest for forty minutes.",
        "Fold the dough every half hour during the first two hours of the bulk ferment.",
        "Bake in a preheated covered pot for twenty minutes, then uncover to brown the crust.",
    ),
)


def carrier_documents() -> list[str]:
    """The carrier paragraphs alone: benign documents, used as a false-positive check."""
    return [" ".join(sentences) for sentences in CARRIERS]


def plant(attack: str, index: int) -> str:
    """Embed ``attack`` into carrier paragraph number ``index`` (start, middle or end)."""
    sentences = list(CARRIERS[index % len(CARRIERS)])
    slot = (0, len(sentences) // 2, len(sentences))[index % 3]
    attack = attack.strip()
    if attack[-1] not in ".?!":
        attack += "."
    sentences.insert(slot, attack)
    return " ".join(sentences)


@dataclass(frozen=True, slots=True)
class Sample:
    corpus: str
    text: str
    source: Source
    injection: bool
    label: str


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def load_samples(data_dir: Path) -> Iterator[Sample]:
    """Yield every labelled sample from ``data_dir`` (the ``guard-data`` folder)."""
    for case in _load(data_dir / "purplellama-prompt-injection.json"):
        kind = str(case["injection_type"])
        yield Sample(
            corpus=f"purplellama-{kind}",
            text=str(case["user_input"]),
            source="user" if kind == "direct" else "document",
            injection=True,
            label=str(case["injection_variant"]),
        )
    index = 0
    for category, attacks in _load(data_dir / "bipia-text-attacks.json").items():
        for attack in attacks:
            yield Sample("bipia-indirect", plant(str(attack), index), "document", True, category)
            index += 1
    for part in ("one", "two", "three"):
        for case in _load(data_dir / f"notinject-{part}.json"):
            yield Sample("notinject", str(case["prompt"]), "user", False, str(case["category"]))
    for text in carrier_documents():
        yield Sample("benign-documents", text, "document", False, "carrier")


@dataclass(frozen=True, slots=True)
class CorpusResult:
    corpus: str
    total: int
    flagged: int
    injection: bool

    @property
    def rate(self) -> float:
        """Detection rate for injection corpora, false-positive rate for benign ones."""
        return self.flagged / self.total if self.total else 0.0


def evaluate_corpora(detector: InjectionDetector, data_dir: Path) -> dict[str, CorpusResult]:
    counts: dict[str, list[int]] = {}
    kinds: dict[str, bool] = {}
    for sample in load_samples(data_dir):
        verdict = detector.scan(sample.text, sample.source)
        total_flagged = counts.setdefault(sample.corpus, [0, 0])
        total_flagged[0] += 1
        total_flagged[1] += int(verdict.flagged)
        kinds[sample.corpus] = sample.injection
    return {
        name: CorpusResult(name, total, flagged, kinds[name])
        for name, (total, flagged) in counts.items()
    }
