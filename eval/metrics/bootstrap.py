"""Bootstrap confidence intervals of a mean score and of the difference between two systems, as pure functions.

This module imports nothing from the project (``eval/metrics`` is a leaf); inputs are per-example scores (e.g. the
``exact`` of :func:`eval.metrics.vqa.vqa_example_scores`), one float per example.

- :func:`bootstrap_ci`: the percentile interval of the mean of ``scores`` resampled with replacement.
- :func:`paired_bootstrap`: two systems scored on the *same* examples. Each resample draws one set of example indices
  and uses it for both systems, so the interval is of the mean difference ``b - a`` over examples; pairing removes
  the spread that comes from which examples are easy, which an unpaired comparison would count as noise.

The interval at ``confidence`` c is ``[q((1 - c) / 2), q((1 + c) / 2)]`` of the resampled means (``numpy.quantile``,
linear interpolation). Resampling uses ``numpy.random.default_rng(seed)``: the same inputs and seed give the same
interval.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# resampled means are computed in blocks of at most this many drawn indices, so that a large test set
# (resamples x n indices) does not need one huge index matrix
_BLOCK_ELEMENTS = 1 << 20


def _scores(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers, got shape {arr.shape}")
    if arr.size < 1:
        raise ValueError(f"{name} is empty: the bootstrap needs at least one example")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite values (nan or inf)")
    return arr


def _check_options(resamples: int, confidence: float) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _resampled_means(values: np.ndarray, resamples: int, seed: int | None) -> np.ndarray:
    """``resamples`` means of ``values`` resampled with replacement: row ``i`` of the index matrix
    ``rng.integers(0, n, size=(resamples, n))`` is resample ``i``. The blocks draw the same indices as that one
    matrix would (the generator fills them in order), so the result depends only on the inputs and the seed."""
    rng = np.random.default_rng(seed)
    n = values.size
    block = max(1, _BLOCK_ELEMENTS // n)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, block):
        stop = min(start + block, resamples)
        indices = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[indices].mean(axis=1)
    return means


def _interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_ci(
    scores: Sequence[float], resamples: int = 1000, seed: int | None = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """``{"mean", "low", "high", "resamples", "n"}``: the mean of ``scores`` and its percentile bootstrap interval.
    Raises ``ValueError`` for no scores, non-finite scores, ``resamples < 1`` or ``confidence`` outside (0, 1)."""
    values = _scores(scores, "scores")
    _check_options(resamples, confidence)
    low, high = _interval(_resampled_means(values, int(resamples), seed), confidence)
    return {"mean": float(values.mean()), "low": low, "high": high, "resamples": int(resamples), "n": int(values.size)}


def paired_bootstrap(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """``{"mean_a", "mean_b", "diff", "low", "high", "resamples", "n"}``: the means of two systems on the same
    examples, the mean difference ``diff = mean(b - a)`` and its percentile interval over examples resampled with
    replacement (the same indices for both systems). An interval above 0 means ``b`` is better at that confidence.
    Raises ``ValueError`` when the lengths differ, or as :func:`bootstrap_ci` does."""
    a, b = _scores(scores_a, "scores_a"), _scores(scores_b, "scores_b")
    if a.size != b.size:
        raise ValueError(f"paired scores differ in length: scores_a {a.size}, scores_b {b.size}")
    _check_options(resamples, confidence)
    # the mean of a resample's differences is the difference of its means, so resampling b - a uses the same
    # indices for both systems
    diffs = b - a
    low, high = _interval(_resampled_means(diffs, int(resamples), seed), confidence)
    return {
        "mean_a": float(a.mean()),
        "mean_b": float(b.mean()),
        "diff": float(diffs.mean()),
        "low": low,
        "high": high,
        "resamples": int(resamples),
        "n": int(a.size),
    }


def _statistics(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"{name} must be [examples, statistics] with at least one example, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite values (nan or inf)")
    return arr


def paired_bootstrap_statistic(
    stats_a: Any,
    stats_b: Any,
    statistic: Callable[[np.ndarray], float],
    resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The paired bootstrap of a corpus-level score that is a function of summed per-example statistics (corpus
    BLEU from n-gram counts and lengths, micro F1 from ``(tp, fp, fn)``).

    ``stats_a``, ``stats_b``: float [N, K] (or [N]) per-example statistics of two systems on the same examples;
    ``statistic``: float [K] sums -> score. Each resample draws one set of example indices (as
    :func:`paired_bootstrap` does: ``rng.integers(0, N, size=(resamples, N))`` row by row) and scores both systems
    on it; the interval is of ``statistic(b) - statistic(a)``. Returns the keys of :func:`paired_bootstrap`, with
    ``mean_a`` / ``mean_b`` the corpus scores of all examples and ``diff`` their difference."""
    a, b = _statistics(stats_a, "stats_a"), _statistics(stats_b, "stats_b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"paired statistics differ in length: stats_a {a.shape[0]}, stats_b {b.shape[0]}")
    _check_options(resamples, confidence)
    rng = np.random.default_rng(seed)
    n = a.shape[0]
    block = max(1, _BLOCK_ELEMENTS // (n * max(a.shape[1], b.shape[1])))
    diffs = np.empty(int(resamples), dtype=np.float64)
    for start in range(0, int(resamples), block):
        stop = min(start + block, int(resamples))
        indices = rng.integers(0, n, size=(stop - start, n))
        sums_a, sums_b = a[indices].sum(axis=1), b[indices].sum(axis=1)
        diffs[start:stop] = [statistic(y) - statistic(x) for x, y in zip(sums_a, sums_b)]
    low, high = _interval(diffs, confidence)
    score_a, score_b = float(statistic(a.sum(axis=0))), float(statistic(b.sum(axis=0)))
    return {"mean_a": score_a, "mean_b": score_b, "diff": score_b - score_a, "low": low, "high": high,
            "resamples": int(resamples), "n": int(n)}
