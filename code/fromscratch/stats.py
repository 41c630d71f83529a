"""Small statistics for comparing two methods on the same items: paired tests and intervals.

* `mcnemar_exact`: do two methods succeed equally often on the same items? (exact McNemar test)
* `paired_bootstrap_interval`: an interval for the difference of any statistic of two methods measured
  on the same items, resampling the items (so the pairing is kept).
* `wilson_interval`: an interval for one success rate.
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
    if len(a) < 2:
        raise ValueError(f"a bootstrap needs at least 2 items, got {len(a)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples}")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(a), size=(n_resamples, len(a)))
    differences = np.array([statistic(a[r]) - statistic(b[r]) for r in rows])
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    return Interval(float(statistic(a) - statistic(b)), float(low), float(high), confidence)


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
    return Interval(rate, max(0.0, centre - half), min(1.0, centre + half), confidence)
