"""Clinical efficacy of label sets: precision, recall and F1 of the labels a generated report states against the
labels its reference states (e.g. SynthMed's positive findings, :mod:`synthmed.report_labels`).

This module imports nothing from the project (``eval/metrics`` is a leaf); inputs are one set of label strings per
example.

- micro: true positives, false positives and false negatives summed over examples and labels;
- macro: the mean over the labels that occur in any reference of the per-label F1 (precision, recall likewise);
- :func:`label_set_counts`: per-example ``(tp, fp, fn)``, the sufficient statistics of the micro scores, for
  :func:`eval.metrics.bootstrap.paired_bootstrap_statistic`.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _check(predicted: Sequence[Iterable[str]], reference: Sequence[Iterable[str]]) -> None:
    if len(predicted) != len(reference):
        raise ValueError(f"predicted and reference label sets differ in length: {len(predicted)} and {len(reference)}")


def label_set_counts(predicted: Sequence[Iterable[str]], reference: Sequence[Iterable[str]]) -> np.ndarray:
    """int64 [N, 3]: ``(tp, fp, fn)`` of each example."""
    _check(predicted, reference)
    rows = []
    for p, r in zip(predicted, reference):
        p, r = set(p), set(r)
        rows.append((len(p & r), len(p - r), len(r - p)))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def micro_f1(counts: np.ndarray) -> float:
    """Micro F1 of summed ``(tp, fp, fn)`` (the reducer for the bootstrap)."""
    return _prf(*(float(c) for c in counts[:3]))[2]


def label_set_efficacy(predicted: Sequence[Iterable[str]], reference: Sequence[Iterable[str]]) -> dict[str, float]:
    """``precision_micro, recall_micro, f1_micro, precision_macro, recall_macro, f1_macro`` and ``count``
    (examples). No example: every score is ``nan``."""
    _check(predicted, reference)
    keys = [f"{m}_{a}" for a in ("micro", "macro") for m in ("precision", "recall", "f1")]
    if not predicted:
        return {**{k: float("nan") for k in keys}, "count": 0.0}
    per_label: dict[str, Counter] = {}
    for p, r in zip(predicted, reference):
        p, r = set(p), set(r)
        for label in p | r:
            c = per_label.setdefault(label, Counter())
            c["tp"] += label in p and label in r
            c["fp"] += label in p and label not in r
            c["fn"] += label in r and label not in p
    totals = label_set_counts(predicted, reference).sum(axis=0)
    out = dict(zip(keys[:3], _prf(*(float(t) for t in totals))))
    scored = [c for c in per_label.values() if c["tp"] + c["fn"] > 0]
    for i, name in enumerate(keys[3:]):
        values = [_prf(c["tp"], c["fp"], c["fn"])[i] for c in scored]
        out[name] = math.fsum(values) / len(values) if values else float("nan")
    out["count"] = float(len(predicted))
    return out
