"""Bootstrap statistics: seeded resamples, percentile intervals, the paired test."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import stats


def test_resample_counts_are_seeded_draws_of_n_with_replacement() -> None:
    blocks = list(stats.resample_counts(7, 60, seed=3))
    assert [b.shape for b in blocks] == [(25, 7), (25, 7), (10, 7)]
    counts = np.concatenate(blocks)
    assert (counts.sum(axis=1) == 7).all() and (counts >= 0).all()
    again = np.concatenate(list(stats.resample_counts(7, 60, seed=3)))
    other = np.concatenate(list(stats.resample_counts(7, 60, seed=4)))
    assert (counts == again).all() and not (counts == other).all()
    # every pair is drawn about equally often
    assert np.allclose(counts.mean(axis=0), 1.0, atol=0.35)
    with pytest.raises(ValueError, match="no pairs"):
        next(stats.resample_counts(0, 10))


def test_mean_statistic_and_observed() -> None:
    scores = [0.0, 1.0, 0.5, 0.25]
    statistic = stats.mean_statistic(scores)
    assert stats.observed(statistic, 4) == pytest.approx(0.4375)
    counts = np.array([[4.0, 0, 0, 0], [0, 2, 2, 0]])
    assert statistic(counts).tolist() == [0.0, 0.75]
    both = stats.mean_of([statistic, stats.mean_statistic([1.0, 1.0, 1.0, 1.0])])
    assert both(counts).tolist() == [0.5, 0.875]


def test_percentile_interval_of_a_mean() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(0.3, 0.1, size=2000)
    ci = stats.confidence_intervals({"m": stats.mean_statistic(scores)}, len(scores))["m"]
    half = 1.96 * scores.std(ddof=1) / np.sqrt(len(scores))  # the normal-theory half width
    assert ci[0] < scores.mean() < ci[1]
    assert ci[1] - ci[0] == pytest.approx(2 * half, rel=0.15)
    assert stats.percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))


def test_paired_bootstrap_of_identical_systems() -> None:
    statistic = stats.mean_statistic([0.1, 0.4, 0.2, 0.9])
    c = stats.paired_bootstrap(statistic, statistic, 4)
    assert (c.difference, c.ci95, c.p_value) == (0.0, (0.0, 0.0), 1.0)


def test_paired_bootstrap_detects_a_clear_difference_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, 300)
    better = stats.paired_bootstrap(stats.mean_statistic(a), stats.mean_statistic(a + 0.1), 300)
    assert better.difference == pytest.approx(0.1)
    assert better.ci95[0] == pytest.approx(0.1) and better.ci95[1] == pytest.approx(0.1)
    assert better.p_value == 1 / 1001  # never 0
    noise = rng.normal(0, 0.05, 300)
    noisy = stats.paired_bootstrap(stats.mean_statistic(a), stats.mean_statistic(a + noise), 300)
    assert noisy.ci95[0] < 0 < noisy.ci95[1] or noisy.p_value < 0.05
    assert (noisy.n, noisy.resamples) == (300, 1000)
    # B - A against A - B: the same test, mirrored
    mirrored = stats.paired_bootstrap(stats.mean_statistic(a + noise), stats.mean_statistic(a), 300)
    assert mirrored.p_value == noisy.p_value
    assert mirrored.ci95[0] == pytest.approx(-noisy.ci95[1])


def test_paired_bootstrap_p_value_is_calibrated_under_no_difference() -> None:
    """Two systems with the same expected score: p < 0.05 in about 5 % of the trials."""
    rng = np.random.default_rng(2)
    rejections = 0
    trials = 60
    for _ in range(trials):
        base = rng.uniform(0, 1, 200)
        a = base + rng.normal(0, 0.1, 200)
        b = base + rng.normal(0, 0.1, 200)
        c = stats.paired_bootstrap(stats.mean_statistic(a), stats.mean_statistic(b), 200, 400)
        rejections += c.p_value < 0.05
    assert rejections <= 9  # expectation 3; binomial tail above 9 is < 0.1 %
