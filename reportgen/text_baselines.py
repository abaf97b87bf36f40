"""Text-only report baselines: what a system that never looks at the image scores, so that the metrics of a model
can be read against the floor the report style alone gives (and against the literature's numbers).

- ``consensus``: the nearest neighbour of the training corpus' centre. Reports are TF-IDF vectors of their word
  1- and 2-grams; the ``candidates`` training reports closest (cosine) to the mean vector are scored against a sample
  of training reports with corpus BLEU-4, and the best is written for every study. Only training reports are used.
- ``frequent``: the most frequent training report (after lower-casing and collapsing white space), the template
  a normal study gets.
- ``random``: the report of a random training study (seeded), per study.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

METHODS: tuple[str, ...] = ("consensus", "frequent", "random")
_WORD = re.compile(r"[a-z0-9]+")


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def _grams(text: str) -> Counter:
    words = _WORD.findall(text.lower())
    return Counter(words + [" ".join(p) for p in pairwise(words)])


def frequent_report(train: Sequence[str]) -> str:
    """The most frequent training report (ties: the first seen), in its first spelling."""
    if not train:
        raise ValueError("no training report")
    counts = Counter(_normalised(t) for t in train)
    best = max(counts.values())
    return next(t for t in train if counts[_normalised(t)] == best)


def consensus_report(train: Sequence[str], candidates: int = 50, references: int = 500, seed: int = 0) -> str:
    """The training report closest to the corpus centre, chosen by BLEU-4 among the ``candidates`` nearest to the
    mean TF-IDF vector (module docstring); ``references`` training reports (a seeded sample) are the references."""
    from eval.metrics.nlg import nlg_metrics

    if not train:
        raise ValueError("no training report")
    distinct = list(dict.fromkeys(t for t in train if t.strip()))
    grams = [_grams(t) for t in distinct]
    df = Counter(g for c in grams for g in c)
    n = len(distinct)
    idf = {g: math.log((1 + n) / (1 + d)) + 1.0 for g, d in df.items()}
    vectors = []
    for c in grams:
        v = {g: tf * idf[g] for g, tf in c.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        vectors.append({g: x / norm for g, x in v.items()})
    centre: Counter = Counter()
    for v in vectors:
        centre.update(v)
    similarity = [sum(x * centre[g] for g, x in v.items()) for v in vectors]
    ranked = sorted(range(len(distinct)), key=lambda i: -similarity[i])[:max(1, candidates)]
    sample = random.Random(seed).sample(list(train), min(references, len(train)))
    scores = [nlg_metrics([distinct[i]] * len(sample), sample, meteor=False)["bleu_4"] for i in ranked]
    return distinct[ranked[max(range(len(ranked)), key=lambda k: scores[k])]]


def baseline_reports(method: str, train: Sequence[str], count: int, seed: int = 0) -> list[str]:
    """``count`` reports by ``method`` (one of :data:`METHODS`) from the training reports ``train``."""
    if method == "consensus":
        return [consensus_report(train, seed=seed)] * count
    if method == "frequent":
        return [frequent_report(train)] * count
    if method == "random":
        rng = random.Random(seed)
        return [rng.choice(list(train)) for _ in range(count)]
    raise ValueError(f"unknown baseline {method!r}; methods are {', '.join(METHODS)}")
