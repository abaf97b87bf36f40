"""Radiology-style reports: one sentence per finding, pertinent negatives, and an impression.

Findings, in the modality's organ order:

* one sentence per (organ, lesion type) found: "There is a small nodule in the left lung." or
  "There are two cysts in the liver (small and medium).";
* one pertinent negative per lesion type of the modality that is absent: "No mass in the right lung, the left lung
  or the heart.";
* "The heart is unremarkable." for every organ without findings.

The impression lists the positive findings briefly ("Small nodule in the left lung. Two cysts in the liver.").
Each sentence carries the grounding phrases it talks about, so a generated report can be linked back to regions.
"""
from __future__ import annotations

from dataclasses import dataclass

from synthmed.modalities import SIZES
from synthmed.scene import Lesion, Scene

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}


@dataclass(frozen=True)
class Sentence:
    """A report sentence and the grounding phrases (lesion or organ) it refers to."""

    text: str
    phrases: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """``findings`` and ``impression`` texts, and the finding sentences with their phrases."""

    findings: str
    impression: str
    sentences: tuple[Sentence, ...]

    @property
    def text(self) -> str:
        """The whole report: findings followed by the impression."""
        return f"{self.findings} {self.impression}".strip()


def _number(n: int) -> str:
    return NUMBER_WORDS.get(n, str(n))


def _join_or(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]


def _join_and(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _group_sentence(lesions: list[Lesion]) -> tuple[str, str]:
    """The finding sentence and the impression item for lesions of one type in one organ."""
    first = lesions[0]
    kind, organ = first.kind, first.organ
    if len(lesions) == 1:
        return (f"There is a {first.size} {kind} in the {organ}.", f"{first.size.capitalize()} {kind} in the {organ}.")
    sizes = sorted((les.size for les in lesions), key=SIZES.index)
    count = _number(len(lesions))
    plural = first.spec.plural
    if len(set(sizes)) == 1:
        text = f"There are {count} {sizes[0]} {plural} in the {organ}."
    else:
        text = f"There are {count} {plural} in the {organ} ({_join_and(sizes)})."
    return text, f"{count.capitalize()} {plural} in the {organ}."


def write_report(scene: Scene) -> Report:
    """The report of ``scene`` (deterministic: organ order of the spec, lesion types in vocabulary order)."""
    spec = scene.modality
    sentences: list[Sentence] = []
    impression: list[str] = []
    for organ in spec.organs:
        for lspec in spec.lesions:
            group = [les for les in scene.lesions if les.organ == organ.name and les.kind == lspec.name]
            if group:
                text, item = _group_sentence(group)
                sentences.append(Sentence(text, (group[0].phrase,)))
                impression.append(item)
    present_kinds = {les.kind for les in scene.lesions}
    for lspec in spec.lesions:
        if lspec.name not in present_kinds:
            organs = [o.name for o in spec.organs if o.name in lspec.parents]
            sentences.append(Sentence(f"No {lspec.name} in {_join_or([f'the {o}' for o in organs])}.", tuple(organs)))
    affected = {les.organ for les in scene.lesions}
    for organ in spec.organs:
        if organ.name not in affected:
            text = f"The {organ.name} {'are' if organ.plural else 'is'} unremarkable."
            sentences.append(Sentence(text, (organ.name,)))
    findings = " ".join(s.text for s in sentences)
    summary = " ".join(impression) if impression else f"Normal {spec.display} study."
    return Report(findings, summary, tuple(sentences))
