"""Bootstrap intervals: degenerate cases worked out by hand, a clear improvement, pairing, reproducibility, checks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from eval.metrics.bootstrap import bootstrap_ci, paired_bootstrap


def test_identical_scores_give_a_zero_difference():
    scores = np.random.default_rng(0).random(50).tolist()
    result = paired_bootstrap(scores, scores, resamples=300)
    assert (result["diff"], result["low"], result["high"]) == (0.0, 0.0, 0.0)
    assert result["mean_a"] == result["mean_b"] == pytest.approx(float(np.mean(scores)))
    assert (result["resamples"], result["n"]) == (300, 50)
    assert set(result) == {"mean_a", "mean_b", "diff", "low", "high", "resamples", "n"}


def test_a_clear_improvement_has_an_interval_above_zero():
    # 200 questions: a answers 100; b answers the same 100 and 60 more -> diff 60/200 = 0.3. The resampled mean of
    # the 0/1 differences has standard error sqrt(0.3 * 0.7 / 200) ~ 0.032, so the 95% interval is about 0.3 +- 0.063
    a = [0] * 100 + [1] * 100
    b = [1] * 60 + [0] * 40 + [1] * 100
    result = paired_bootstrap(a, b, resamples=1000, seed=0)
    assert (result["mean_a"], result["mean_b"]) == (0.5, 0.8)
    assert result["diff"] == pytest.approx(0.3)
    assert 0.2 < result["low"] < 0.3 < result["high"] < 0.4
    # and the other way round: the interval is below zero
    result = paired_bootstrap(b, a, resamples=1000, seed=0)
    assert result["diff"] == pytest.approx(-0.3) and result["high"] < -0.2


def test_the_same_indices_resample_both_systems():
    # b is a plus 0.01 on every example, a spread widely: every paired resample differs by exactly 0.01, while
    # resampling the two systems independently would give an interval about +-0.08 wide
    a = np.random.default_rng(5).random(100)
    result = paired_bootstrap(a, a + 0.01, resamples=500, seed=3)
    assert result["low"] == pytest.approx(0.01, abs=1e-9) and result["high"] == pytest.approx(0.01, abs=1e-9)


def test_matches_a_direct_implementation():
    # more indices than one block (1000 x 3000 > 2**20): the blocks must draw the same indices as one matrix
    rng = np.random.default_rng(11)
    a, b = rng.random(3000), rng.random(3000)
    result = paired_bootstrap(a, b, resamples=1000, seed=7, confidence=0.9)
    indices = np.random.default_rng(7).integers(0, 3000, size=(1000, 3000))
    means = (b - a)[indices].mean(axis=1)
    low, high = np.quantile(means, [0.05, 0.95])
    assert result["low"] == pytest.approx(low, abs=1e-12) and result["high"] == pytest.approx(high, abs=1e-12)


def test_seeded_runs_are_reproducible_and_seeds_matter():
    rng = np.random.default_rng(1)
    a, b = rng.random(80).tolist(), rng.random(80).tolist()
    first = paired_bootstrap(a, b, resamples=200, seed=42)
    assert paired_bootstrap(a, b, resamples=200, seed=42) == first
    other = paired_bootstrap(a, b, resamples=200, seed=43)
    assert (other["low"], other["high"]) != (first["low"], first["high"])
    assert other["diff"] == first["diff"]  # the point estimate does not depend on the seed
    assert bootstrap_ci(a, resamples=200, seed=42) == bootstrap_ci(a, resamples=200, seed=42)


def test_bootstrap_ci_by_hand():
    # one example: every resample is that example
    assert bootstrap_ci([0.7], resamples=50) == {"mean": 0.7, "low": 0.7, "high": 0.7, "resamples": 50, "n": 1}
    # scores [0, 1]: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the 2.5% and 97.5%
    # quantiles of 2000 resamples are 0 and 1
    result = bootstrap_ci([0, 1], resamples=2000)
    assert (result["mean"], result["low"], result["high"]) == (0.5, 0.0, 1.0)


def test_bootstrap_ci_width_matches_the_standard_error():
    # 400 coin flips with p = 0.3: the 95% interval is about mean +- 1.96 * sqrt(p (1 - p) / n) ~ +-0.045
    scores = (np.random.default_rng(2).random(400) < 0.3).astype(float)
    result = bootstrap_ci(scores, resamples=2000, seed=0)
    mean = scores.mean()
    half = 1.96 * math.sqrt(mean * (1 - mean) / 400)
    assert result["low"] < mean < result["high"]
    assert (result["high"] - result["low"]) / 2 == pytest.approx(half, rel=0.15)
    narrower = bootstrap_ci(scores, resamples=2000, seed=0, confidence=0.5)
    assert result["low"] < narrower["low"] < narrower["high"] < result["high"]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="scores_a 3, scores_b 2"):
        paired_bootstrap([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci([0.5, float("nan")])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([1.0], resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([1.0], [1.0], confidence=1.0)
