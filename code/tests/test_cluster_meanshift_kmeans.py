"""Mean shift and k-means against scikit-learn and brute force, and their errors on bad input."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans, MeanShift
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from fromscratch.cluster import (
    assign,
    course_blobs,
    kmeans,
    kmeans_plus_plus,
    knn_mean_shift,
    landmark_mean_shift,
    mean_shift,
    row_minimum,
)
from fromscratch.cluster.meanshift import shift


@pytest.fixture(scope="module")
def blobs() -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _ = course_blobs(n_per_cluster=100, seed=42)
    return x, y


@pytest.mark.parametrize("kernel", ["gaussian", "triangular"])
def test_mean_shift_finds_the_blobs(blobs, kernel):
    x, y = blobs
    result = mean_shift(x, bandwidth=2.5 if kernel == "gaussian" else 5.0, kernel=kernel)
    assert result.n_clusters == 6
    assert adjusted_rand_score(y, result.labels) == 1.0


def test_mean_shift_agrees_with_sklearn(blobs):
    x, _ = blobs
    ours = mean_shift(x, bandwidth=2.5, kernel="gaussian").labels
    theirs = MeanShift(bandwidth=5.0).fit(x.numpy()).labels_
    assert adjusted_rand_score(theirs, ours) == 1.0


def test_landmark_mean_shift_matches_full(blobs):
    x, _ = blobs
    full = mean_shift(x, 2.5)
    fast = landmark_mean_shift(x, 2.5, n_landmarks=128)
    assert adjusted_rand_score(full.labels, fast.labels) == 1.0
    assert torch.allclose(full.centers, fast.centers, atol=0.5)


def test_knn_mean_shift_on_small_blobs(blobs):
    x, y = blobs
    assert adjusted_rand_score(y, knn_mean_shift(x, 2.5, k=64).labels) == 1.0


def test_shift_step_equals_the_definition():
    g = torch.Generator().manual_seed(0)
    points, reference = torch.randn(7, 3, generator=g, dtype=torch.float64), \
        torch.randn(11, 3, generator=g, dtype=torch.float64)
    weights = torch.rand(11, generator=g, dtype=torch.float64)
    w = torch.exp(-((points[:, None] - reference[None]) ** 2).sum(2) / (2 * 0.7**2)) * weights
    expected = (w @ reference) / w.sum(1, keepdim=True)
    got = shift(points, reference, 0.7, "gaussian", weights, batch_size=3)
    torch.testing.assert_close(got, expected)


def test_kmeans_recovers_separated_blobs():
    grid = [[10.0 * i, 10.0 * j] for i in range(4) for j in range(2)]        # 8 blobs, 10 apart
    x, y = make_blobs(n_samples=2000, centers=grid, cluster_std=0.5, random_state=1)
    fit = kmeans(torch.tensor(x), 8, seed=0)
    assert adjusted_rand_score(y, fit.labels) == 1.0


def test_kmeans_matches_sklearn_from_the_same_start():
    x, _ = make_blobs(n_samples=3000, centers=20, n_features=5, random_state=3)
    x = torch.tensor(x)
    init = kmeans_plus_plus(x, 20, seed=0)
    ours = kmeans(x, 20, iterations=50, tol=0.0, init=init)
    theirs = KMeans(20, init=init.numpy(), n_init=1, max_iter=50, tol=0.0, algorithm="lloyd").fit(x.numpy())
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-6)
    assert adjusted_rand_score(theirs.labels_, ours.labels) == 1.0


def test_kmeans_inertia_never_rises():
    x, _ = make_blobs(n_samples=1000, centers=5, random_state=0)
    history = kmeans(torch.tensor(x), 12, iterations=30, tol=0.0).history
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(history))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), d=st.integers(1, 5), k=st.integers(1, 10), seed=st.integers(0, 1000),
       batch=st.integers(1, 70))
def test_assignment_is_the_brute_force_argmin(n, d, k, seed, batch):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    c = torch.randn(k, d, generator=g, dtype=torch.float64)
    labels, d2 = assign(x, c, batch_size=batch)
    brute = ((x[:, None] - c[None]) ** 2).sum(2)
    torch.testing.assert_close(d2, brute.min(1).values)
    assert torch.equal(brute[torch.arange(n), labels], brute.min(1).values)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 40), k=st.integers(1, 300), levels=st.integers(1, 5), seed=st.integers(0, 10**6),
       dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]))
def test_row_minimum_is_min_with_its_first_index(rows, k, levels, seed, dtype):
    """Same value and index as torch's min(1), ties included (few levels make many ties)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(-levels, levels + 1, (rows, k), generator=g).to(dtype) / 4
    flag_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    reversed_index = torch.arange(k, 0, -1, dtype=flag_dtype)
    best, index = row_minimum(scores, reversed_index, torch.empty(rows, k, dtype=flag_dtype))
    expected = scores.min(1)
    assert torch.equal(best, expected.values)
    assert torch.equal(index, expected.indices)


def test_assignment_refuses_nan_and_overflow():
    x = torch.randn(20, 3)
    x[7, 1] = float("nan")
    with pytest.raises(ValueError, match="nan"):
        assign(x, torch.randn(4, 3))
    for huge in (float("inf"), 3e38):   # inf itself, and squares that overflow float32
        with pytest.raises(ValueError, match="overflow"):
            assign(torch.full((3, 2), huge), torch.full((2, 2), -huge))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: mean_shift(torch.empty(0, 2), 1.0), "empty"),
    (lambda: mean_shift(torch.zeros(5), 1.0), "shape"),
    (lambda: mean_shift(torch.zeros(5, 2), 0.0), "bandwidth"),
    (lambda: mean_shift(torch.zeros(5, 2), -1.0), "bandwidth"),
    (lambda: mean_shift(torch.zeros(5, 2), 1.0, kernel="box"), "kernel"),
    (lambda: landmark_mean_shift(torch.zeros(5, 2), 0.0), "bandwidth"),
    (lambda: knn_mean_shift(torch.zeros(5, 2), 1.0, k=6), "k=6"),
    (lambda: kmeans(torch.zeros(5, 2), 6), "k=6"),
    (lambda: kmeans(torch.empty(0, 3), 1), "empty"),
    (lambda: kmeans(torch.zeros(5, 2), 2, init="nope"), "init"),
    (lambda: kmeans(torch.zeros(5, 2), 0), "k must"),
])
def test_clear_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_landmark_mean_shift_that_shifts_only_landmarks(blobs):
    x, y = blobs
    fast = landmark_mean_shift(x, 2.5, n_landmarks=128, shift_points=False)
    assert len(fast.modes) == len(x)
    assert adjusted_rand_score(y, fast.labels) == 1.0
