"""Paired statistics of fromscratch.stats, checked against scipy.stats on the same inputs."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from fromscratch.stats import bootstrap_interval, mcnemar_exact, paired_bootstrap_interval, wilson_interval


@pytest.mark.parametrize(("only_a", "only_b", "both", "neither"),
                         [(10, 0, 90, 0), (3, 7, 50, 40), (5, 5, 0, 0), (0, 0, 20, 3), (1, 12, 30, 30)])
def test_mcnemar_exact_is_a_binomial_test_of_the_discordant_pairs(only_a, only_b, both, neither):
    a = np.array([True] * only_a + [False] * only_b + [True] * both + [False] * neither)
    b = np.array([False] * only_a + [True] * only_b + [True] * both + [False] * neither)
    result = mcnemar_exact(a, b)
    assert (result.only_a, result.only_b, result.both, result.neither) == (only_a, only_b, both, neither)
    expected = 1.0 if only_a + only_b == 0 else scipy_stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(b, a).p_value == pytest.approx(result.p_value, rel=1e-12)  # symmetric


def test_mcnemar_exact_ten_to_none():
    # the DiffEdit ablation's case: one method wins all 10 discordant items, p = 2 / 2**10
    result = mcnemar_exact([1] * 100, [1] * 90 + [0] * 10)
    assert result.p_value == pytest.approx(2 / 1024)


def test_mcnemar_bad_input():
    with pytest.raises(ValueError, match="same items"):
        mcnemar_exact([True, False], [True])
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0.5, 1], [1, 1])
    with pytest.raises(ValueError, match="1-d"):
        mcnemar_exact(np.ones((2, 2), bool), np.ones((2, 2), bool))


def test_paired_bootstrap_mean_matches_scipy():
    rng = np.random.default_rng(1)
    a = rng.normal(1.0, 2.0, 200)
    b = a + rng.normal(0.3, 0.5, 200)  # strongly paired: the pairing shrinks the interval
    ours = paired_bootstrap_interval(a, b, n_resamples=20_000, seed=2)
    theirs = scipy_stats.bootstrap((a, b), lambda x, y: np.mean(x) - np.mean(y), paired=True,
                                   vectorized=False, n_resamples=20_000, method="percentile",
                                   random_state=np.random.default_rng(3)).confidence_interval
    assert ours.estimate == pytest.approx(a.mean() - b.mean())
    width = theirs.high - theirs.low
    assert abs(ours.low - theirs.low) < 0.05 * width
    assert abs(ours.high - theirs.high) < 0.05 * width
    unpaired = np.std(a) * (2 / 200) ** 0.5 * 3.92  # the width the interval would have without pairing
    assert ours.high - ours.low < unpaired / 2


def test_paired_bootstrap_pooled_statistic():
    # rows of (squared error, pixel count): a pooled PSNR, as the DiffEdit post uses it
    rng = np.random.default_rng(0)
    errors_a = np.stack([rng.gamma(2, 0.001, 100), np.full(100, 1000.0)], axis=1)
    errors_b = errors_a * [2.0, 1.0]  # B makes twice the squared error on every item: 3.01 dB worse

    def psnr(rows):
        return 10 * np.log10(rows[:, 1].sum() / rows[:, 0].sum())

    interval = paired_bootstrap_interval(errors_a, errors_b, psnr, n_resamples=2_000)
    assert interval.estimate == pytest.approx(10 * np.log10(2))
    assert (interval.low, interval.high) == pytest.approx((10 * np.log10(2), 10 * np.log10(2)))
    assert paired_bootstrap_interval(errors_a, errors_b, psnr, seed=5) == \
        paired_bootstrap_interval(errors_a, errors_b, psnr, seed=5)  # seeded: reproducible


def test_paired_bootstrap_bad_input():
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap_interval(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="at least 2"):
        paired_bootstrap_interval(np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_interval(np.ones(3), np.ones(3), confidence=95)


def test_bootstrap_interval_matches_scipy():
    values = np.random.default_rng(6).exponential(2.0, 150)
    ours = bootstrap_interval(values, np.median, n_resamples=20_000, seed=1)
    theirs = scipy_stats.bootstrap((values,), np.median, vectorized=False, n_resamples=20_000,
                                   method="percentile", random_state=np.random.default_rng(2))
    theirs = theirs.confidence_interval
    width = theirs.high - theirs.low
    assert ours.estimate == np.median(values)
    assert abs(ours.low - theirs.low) < 0.05 * width and abs(ours.high - theirs.high) < 0.05 * width
    with pytest.raises(ValueError, match="scalar"):
        bootstrap_interval(np.float64(1.0))


@pytest.mark.parametrize(("successes", "n"), [(90, 100), (100, 100), (0, 20), (37, 96)])
def test_wilson_interval_matches_scipy(successes, n):
    ours = wilson_interval(successes, n)
    theirs = scipy_stats.binomtest(successes, n).proportion_ci(0.95, method="wilson")
    assert ours.estimate == successes / n
    assert ours.low == pytest.approx(theirs.low, abs=1e-12)
    assert ours.high == pytest.approx(theirs.high, abs=1e-12)
    assert ours.low <= ours.estimate <= ours.high


def test_wilson_bad_input():
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)
