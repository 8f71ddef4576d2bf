"""Bootstrap statistics over evaluated pairs: confidence intervals and paired comparisons.

The unit resampled is the evaluated pair (image). A resample is a vector of counts, how many
times each pair is drawn (n draws with replacement from n pairs); a *statistic* maps a block of
such count vectors, shape (resamples, pairs), to the metric's value on each resample. A metric
that is a mean of per-pair scores is `mean_statistic(scores)`; a corpus metric (BLEU, CIDEr)
recomputes its corpus value from per-pair sufficient statistics (harness.metrics.base), so every
metric is resampled the same way and nothing is approximated by averaging sentence scores.

Everything is seeded: the same (n, resamples, seed) always draws the same resamples, and all
metrics of a run (and both systems of a paired test) see the same resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
# Resamples drawn per block: bounds memory (CIDEr holds blocks of n-gram weights) at no cost
# in speed. Part of the definition of the draws, so fixed.
BLOCK = 25

Statistic = Callable[[np.ndarray], np.ndarray]


def mean_statistic(scores: Sequence[float]) -> Statistic:
    """The mean of per-pair scores under each resample."""
    values = np.asarray(scores, dtype=np.float64)
    n = len(values)

    def statistic(counts: np.ndarray) -> np.ndarray:
        return counts @ values / n

    return statistic


def mean_of(statistics: Sequence[Statistic]) -> Statistic:
    """Mean over several statistics of the same pairs (e.g. one per seed, as the leaderboard)."""

    def statistic(counts: np.ndarray) -> np.ndarray:
        return np.mean([s(counts) for s in statistics], axis=0)

    return statistic


def observed(statistic: Statistic, n: int) -> float:
    """The statistic on the evaluated pairs themselves (every count 1)."""
    return float(statistic(np.ones((1, n)))[0])


def resample_counts(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> Iterator[np.ndarray]:
    """Blocks of draw counts, shape (≤ BLOCK, n); `resamples` rows in all."""
    if n < 1:
        raise ValueError("nothing to resample: no pairs")
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        b = min(BLOCK, resamples - done)
        draws = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


def bootstrap(
    statistics: Mapping[str, Statistic],
    n: int,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, np.ndarray]:
    """Each statistic on the same `resamples` resamples of the n pairs: name -> values."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    for counts in resample_counts(n, resamples, seed):
        for name, statistic in statistics.items():
            out[name].append(np.asarray(statistic(counts), dtype=np.float64))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval: the (1 - level)/2 and (1 + level)/2 quantiles (numpy's linear)."""
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def confidence_intervals(
    statistics: Mapping[str, Statistic],
    n: int,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each statistic."""
    draws = bootstrap(statistics, n, resamples, seed)
    return {name: percentile_interval(values, level) for name, values in draws.items()}


@dataclass(frozen=True)
class PairedComparison:
    """System B against system A on the same pairs: B − A, its interval and a two-sided p."""

    a: float
    b: float
    difference: float  # b - a
    ci95: tuple[float, float]
    p_value: float
    n: int
    resamples: int


def paired_bootstrap(
    statistic_a: Statistic,
    statistic_b: Statistic,
    n: int,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> PairedComparison:
    """Paired bootstrap test of B − A: both systems are scored on the same resamples.

    The p-value tests "no difference" two-sided with the centred bootstrap distribution
    (Efron & Tibshirani, ch. 16): p = (1 + #{|d* − d| ≥ |d|}) / (1 + resamples), where d is the
    observed difference and d* a resampled one; it is never 0.
    """
    a, b = observed(statistic_a, n), observed(statistic_b, n)

    def difference(counts: np.ndarray) -> np.ndarray:
        return statistic_b(counts) - statistic_a(counts)

    draws = bootstrap({"d": difference}, n, resamples, seed)["d"]
    return paired_from_draws(a, b, draws, n, level)


def paired_from_draws(
    a: float, b: float, draws: np.ndarray, n: int, level: float = LEVEL
) -> PairedComparison:
    """The paired test from B − A on each resample (`draws`), as `paired_bootstrap` computes
    it: for values kept per system on the same (n, resamples, seed) draws, their difference."""
    diff = b - a
    resamples = len(draws)
    # Differences within floating-point noise of the observed one count as "as extreme".
    tol = 1e-12 * max(1.0, abs(diff))
    extreme = int(np.count_nonzero(np.abs(draws - diff) >= abs(diff) - tol))
    p = (1 + extreme) / (1 + resamples)
    return PairedComparison(
        a, b, diff, percentile_interval(draws, level), min(p, 1.0), n, resamples
    )
