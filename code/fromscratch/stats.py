"""Small statistics for comparing two methods on the same items: paired tests and intervals.

* `mcnemar_exact`: do two methods succeed equally often on the same items? (exact McNemar test)
* `paired_bootstrap_interval`: an interval for the difference of any statistic of two methods measured
  on the same items, resampling the items (so the pairing is kept).
* `bootstrap_interval`: the same for one method's statistic.
* `wilson_interval`: an interval for one success rate.
* `cluster_bootstrap_mean`: an interval for a mean (or a paired difference of means) when items come in
  clusters, such as many samples of each of a few prompts: it resamples whole clusters.
* `smallest_not_below_best`: the smallest setting whose mean is not significantly below the best one's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import comb, sqrt

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class McNemarResult:
    """Paired success of methods A and B: the discordant counts and the exact two-sided p-value."""

    only_a: int  # items A gets right and B gets wrong
    only_b: int  # items B gets right and A gets wrong
    both: int  # items both get right
    neither: int  # items both get wrong
    p_value: float  # two-sided, exact: a binomial test of only_a against only_a + only_b at 1/2


def as_flags(values: np.ndarray | list, name: str) -> np.ndarray:
    """A 1-d bool array from bools or 0/1 values, else a one-line error naming `name`."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one flag per item (1-d), got shape {array.shape}")
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold booleans or 0/1 values")
    return array.astype(bool)


def mcnemar_exact(success_a: np.ndarray | list, success_b: np.ndarray | list) -> McNemarResult:
    """Exact McNemar test: is P(A right, B wrong) = P(A wrong, B right) on the same items?

    Only the discordant items count. Under the null hypothesis each of the n = only_a + only_b is
    equally likely to go either way, so only_a ~ Binomial(n, 1/2); the two-sided p-value is
    min(1, 2 P(X <= min(only_a, only_b))) (the binomial at 1/2 is symmetric). No discordant item: p = 1.
    """
    a, b = as_flags(success_a, "success_a"), as_flags(success_b, "success_b")
    if a.shape != b.shape:
        raise ValueError(f"success_a and success_b must flag the same items, got {a.size} and {b.size}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n, smaller = only_a + only_b, min(only_a, only_b)
    tail = sum(comb(n, k) for k in range(smaller + 1)) / 2 ** n
    return McNemarResult(only_a, only_b, int((a & b).sum()), int((~a & ~b).sum()), min(1.0, 2 * tail))


@dataclass(frozen=True)
class Interval:
    """A point estimate and a confidence interval around it."""

    estimate: float
    low: float
    high: float
    confidence: float

    def __str__(self) -> str:
        return f"{self.estimate:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def paired_bootstrap_interval(a: np.ndarray, b: np.ndarray,
                              statistic: Callable[[np.ndarray], float] = np.mean,
                              n_resamples: int = 10_000, confidence: float = 0.95,
                              seed: int = 0) -> Interval:
    """Percentile bootstrap interval of statistic(a) - statistic(b), both measured on the same items.

    `a` and `b` hold one row per item (axis 0), in the same order; each resample draws items with
    replacement and takes the same rows of both, so an item's two measurements stay together. The
    statistic may pool over items (for example a PSNR from summed squared errors).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim == 0 or b.ndim == 0 or len(a) != len(b):
        raise ValueError(f"a and b must have one row per item, the same items: got shapes {a.shape} "
                         f"and {b.shape}")
    return resampled_interval(lambda rows: statistic(a[rows]) - statistic(b[rows]), len(a), n_resamples,
                              confidence, seed)


def bootstrap_interval(values: np.ndarray, statistic: Callable[[np.ndarray], float] = np.mean,
                       n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of statistic(values), resampling its rows (axis 0) with replacement."""
    values = np.asarray(values)
    if values.ndim == 0:
        raise ValueError("values must have one row per item, got a scalar")
    return resampled_interval(lambda rows: statistic(values[rows]), len(values), n_resamples, confidence,
                              seed)


def resampled_interval(statistic_of_rows: Callable[[np.ndarray], float], n: int, n_resamples: int,
                       confidence: float, seed: int) -> Interval:
    """The estimate on all n rows and the percentile interval over `n_resamples` resamples of the rows."""
    if n < 2:
        raise ValueError(f"a bootstrap needs at least 2 items, got {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples}")
    rng = np.random.default_rng(seed)
    estimates = np.array([statistic_of_rows(rows) for rows in rng.integers(0, n, size=(n_resamples, n))])
    tail = (1 - confidence) / 2
    low, high = np.quantile(estimates, [tail, 1 - tail])
    return Interval(float(statistic_of_rows(np.arange(n))), float(low), float(high), confidence)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval of a success rate successes / n (good also near 0 and 1, unlike p +- z se)."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got successes={successes}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    rate = successes / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    # the interval holds the rate in exact arithmetic; min/max keep it so after rounding (rate 0 or 1)
    return Interval(rate, max(0.0, min(rate, centre - half)), min(1.0, max(rate, centre + half)), confidence)


def cluster_bootstrap_mean(values: np.ndarray | list, clusters: np.ndarray | list,
                           baseline: np.ndarray | list | None = None, n_resamples: int = 10_000,
                           confidence: float = 0.95, seed: int = 0) -> Interval:
    """Percentile cluster-bootstrap interval of mean(values), or of mean(values - baseline) on the same items.

    Items of one cluster (one prompt, say) are not independent, so each resample draws whole clusters
    with replacement and keeps every item of each: the interval then includes the spread between
    clusters. A resample's mean is its summed values over its item count (clusters may differ in size).
    """
    values = np.asarray(values, dtype=float)
    clusters = np.asarray(clusters)
    if values.ndim != 1 or clusters.shape != values.shape:
        raise ValueError(f"values and clusters must be 1-d, one entry per item, got shapes {values.shape} "
                         f"and {clusters.shape}")
    if baseline is not None:
        baseline = np.asarray(baseline, dtype=float)
        if baseline.shape != values.shape:
            raise ValueError(f"baseline must measure the same items as values: shape {values.shape}, "
                             f"got {baseline.shape}")
        values = values - baseline
    names, index = np.unique(clusters, return_inverse=True)
    if len(names) < 2:
        raise ValueError(f"a cluster bootstrap needs at least 2 clusters, got {len(names)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples}")
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(float)
    drawn = np.random.default_rng(seed).integers(0, len(names), size=(n_resamples, len(names)))
    means = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(values.mean()), float(low), float(high), confidence)


def smallest_not_below_best(settings: list[float], values: np.ndarray, clusters: np.ndarray | list,
                            confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """(chosen setting, best setting): the smallest setting whose mean is not significantly below the best's.

    `values` is (len(settings), items): row k measured at settings[k] on the same items (same prompts,
    same noise). The best is the setting with the highest mean; a setting qualifies when the upper end
    of the cluster-bootstrap interval of its paired difference to the best reaches 0. So a difference
    of one or two items between two settings cannot decide the choice.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or len(settings) != len(values):
        raise ValueError(f"values must be (len(settings), items) = ({len(settings)}, items), got shape "
                         f"{values.shape}")
    best = int(np.argmax(values.mean(axis=1)))
    for k in np.argsort(settings):
        difference = cluster_bootstrap_mean(values[k], clusters, values[best], confidence=confidence,
                                            seed=seed)
        if difference.high >= 0:
            return settings[k], settings[best]
    raise AssertionError("unreachable: the best setting's difference to itself is 0")
