"""The cluster bootstrap and the 'smallest setting not below the best' rule of fromscratch.stats."""

import numpy as np
import pytest
from scipy.stats import bootstrap

from fromscratch.stats import cluster_bootstrap_mean, smallest_not_below_best


def test_one_item_per_cluster_is_the_ordinary_bootstrap_of_scipy():
    values = np.random.default_rng(0).normal(size=40)
    ours = cluster_bootstrap_mean(values, np.arange(40), n_resamples=40_000)
    scipys = bootstrap((values,), np.mean, n_resamples=40_000, method="percentile", random_state=1)
    assert ours.estimate == pytest.approx(values.mean())
    assert ours.low == pytest.approx(scipys.confidence_interval.low, abs=0.01)
    assert ours.high == pytest.approx(scipys.confidence_interval.high, abs=0.01)


def test_equal_clusters_resample_like_their_means_and_widen_the_interval():
    rng = np.random.default_rng(1)
    cluster_means = rng.uniform(0.3, 1.0, size=12)
    values = np.repeat(cluster_means, 8)  # every item of a cluster equals its cluster's mean
    clusters = np.repeat(np.arange(12), 8)
    clustered = cluster_bootstrap_mean(values, clusters, n_resamples=40_000)
    of_means = bootstrap((cluster_means,), np.mean, n_resamples=40_000, method="percentile", random_state=2)
    assert clustered.low == pytest.approx(of_means.confidence_interval.low, abs=0.01)
    assert clustered.high == pytest.approx(of_means.confidence_interval.high, abs=0.01)
    naive = cluster_bootstrap_mean(values, np.arange(96), n_resamples=40_000)
    assert clustered.high - clustered.low > 2 * (naive.high - naive.low)


def test_paired_difference_is_the_bootstrap_of_item_differences():
    rng = np.random.default_rng(3)
    a, b = rng.random(60) < 0.9, rng.random(60) < 0.7
    clusters = np.arange(60) % 6
    paired = cluster_bootstrap_mean(a, clusters, baseline=b)
    direct = cluster_bootstrap_mean(a.astype(float) - b, clusters)
    assert (paired.estimate, paired.low, paired.high) == (direct.estimate, direct.low, direct.high)
    assert paired.estimate == pytest.approx(a.mean() - b.mean())


def test_unequal_cluster_sizes_weight_items_not_clusters():
    values = np.array([1.0] * 9 + [0.0])  # cluster 0: nine ones; cluster 1: one zero
    interval = cluster_bootstrap_mean(values, [0] * 9 + [1], n_resamples=2000)
    assert interval.estimate == pytest.approx(0.9)
    assert interval.low == pytest.approx(0.0) and interval.high == pytest.approx(1.0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"values": [1.0, 2.0], "clusters": [0, 0, 1]}, "one entry per item"),
    ({"values": [1.0, 2.0], "clusters": [0, 0]}, "at least 2 clusters"),
    ({"values": [1.0, 2.0], "clusters": [0, 1], "baseline": [1.0]}, "same items"),
    ({"values": [1.0, 2.0], "clusters": [0, 1], "confidence": 1.5}, "confidence"),
    ({"values": [1.0, 2.0], "clusters": [0, 1], "n_resamples": 0}, "n_resamples"),
])
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cluster_bootstrap_mean(**kwargs)


def test_a_one_item_lead_does_not_pick_the_setting():
    clusters = np.arange(96) % 12
    low = np.ones(96)
    low[[0, 13]] = 0  # two failures at setting 1
    high = np.ones(96)
    high[0] = 0  # one failure at setting 2: the highest mean, by one item
    assert smallest_not_below_best([1, 2], np.stack([low, high]), clusters) == (1, 2)


def test_a_clearly_worse_setting_is_passed_over():
    clusters = np.arange(96) % 12
    poor = (np.arange(96) % 2).astype(float)  # half right
    good = np.ones(96)
    assert smallest_not_below_best([3, 1], np.stack([good, poor]), clusters) == (3, 3)
    with pytest.raises(ValueError, match="len\\(settings\\)"):
        smallest_not_below_best([1, 2, 3], np.stack([good, poor]), clusters)
