"""Structured labels of SynthMed findings, for clinical-efficacy scores of generated reports.

A positive finding sentence, as :mod:`synthmed.reports` writes it ("There is a small nodule in the left lung.",
"There are two cysts in the liver (small and medium)."), gives one label ``"<lesion> in the <organ>"`` (the
grounding phrase of the finding, singular), with the lesion and organ names of any SynthMed modality. Pertinent
negatives ("No mass in the right lung or the heart.") and "The heart is unremarkable." give no label: a label set is
the set of positive findings, and a finding the text does not state positively is absent. Anything else (a sentence
a model invented) gives no label.

The labels depend only on the text, so predictions and references are labelled the same way.
"""
from __future__ import annotations

import re
from functools import lru_cache

from synthmed.modalities import MODALITIES, SIZES
from synthmed.reports import NUMBER_WORDS

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@lru_cache(maxsize=1)
def _vocabulary() -> tuple[dict[str, str], frozenset[str], re.Pattern]:
    """(lesion word form -> singular name, organ names, the positive-sentence pattern)."""
    lesions: dict[str, str] = {}
    organs: set[str] = set()
    for spec in MODALITIES.values():
        organs.update(o.name for o in spec.organs)
        for lesion in spec.lesions:
            lesions[lesion.name] = lesion.name
            lesions[lesion.plural] = lesion.name
    alternatives = lambda words: "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    counts = alternatives([*NUMBER_WORDS.values(), r"\d+"]).replace(re.escape(r"\d+"), r"\d+")
    pattern = re.compile(
        rf"^there (?:is an?|are (?:{counts}))\s+(?:(?:{alternatives(SIZES)})\s+)?"
        rf"(?P<lesion>{alternatives(lesions)}) in the (?P<organ>{alternatives(organs)})\b"
    )
    return lesions, frozenset(organs), pattern


def sentence_label(sentence: str) -> str | None:
    """``"<lesion> in the <organ>"`` of a positive finding sentence, else None."""
    lesions, _, pattern = _vocabulary()
    match = pattern.match(" ".join(sentence.lower().split()))
    if match is None:
        return None
    return f"{lesions[match['lesion']]} in the {match['organ']}"


def finding_labels(text: str) -> frozenset[str]:
    """The positive findings of a SynthMed findings text (module docstring)."""
    labels = (sentence_label(s) for s in _SENTENCE_END.split(text.strip()))
    return frozenset(label for label in labels if label is not None)
