"""DBSCAN against scikit-learn (exact labels), PQ and LSH against faiss and exact search."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import DBSCAN
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from fromscratch.cluster import dbscan
from fromscratch.cluster.lsh import HyperplaneLSH, exact_cosine_knn, overlap_recall
from fromscratch.cluster.pq import ProductQuantizer, exact_knn, recall_at


def test_dbscan_equals_sklearn_on_the_demo_data():
    x, y = make_blobs(n_samples=750, centers=[[1, 1], [-1, -1], [1, -1]], cluster_std=0.4,
                      random_state=0)
    x = StandardScaler().fit_transform(x)
    theirs = DBSCAN(eps=0.3, min_samples=10).fit(x).labels_
    ours = dbscan(torch.tensor(x), eps=0.3, min_samples=10, batch_size=100).numpy()
    np.testing.assert_array_equal(ours, theirs)          # noise (-1) included, same numbering
    assert adjusted_rand_score(y, ours) > 0.94


@settings(max_examples=40, deadline=None)
@given(points=st.lists(st.tuples(st.integers(-20, 20), st.integers(-20, 20)), min_size=1, max_size=60),
       eps=st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]), min_samples=st.integers(1, 6),
       batch=st.integers(1, 64))
def test_dbscan_equals_sklearn_on_random_grids(points, eps, min_samples, batch):
    # integer points put many pairs exactly at distance eps: the boundary must count as inside
    x = np.array(points, dtype=np.float64) / 4
    theirs = DBSCAN(eps=eps / 4, min_samples=min_samples).fit(x).labels_
    ours = dbscan(torch.tensor(x), eps=eps / 4, min_samples=min_samples, batch_size=batch).numpy()
    np.testing.assert_array_equal(ours, theirs)


@pytest.fixture(scope="module")
def vectors() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(50, 32, generator=g)
    database = centers[torch.randint(50, (5000,), generator=g)] + 0.3 * torch.randn(5000, 32, generator=g)
    queries = centers[torch.randint(50, (200,), generator=g)] + 0.3 * torch.randn(200, 32, generator=g)
    return database, queries


def test_pq_codes_decode_to_their_codewords(vectors):
    database, _ = vectors
    pq = ProductQuantizer(32, 4, 6).train(database, iterations=5)
    codes = pq.encode(database[:100])
    decoded = pq.decode(codes)
    for m in range(4):
        torch.testing.assert_close(decoded[:, 8 * m: 8 * m + 8], pq.codebooks[m][codes[:, m].long()])
    # each sub-vector's code is its nearest codeword
    part = database[:100, :8]
    assert torch.equal(torch.cdist(part, pq.codebooks[0]).argmin(1), codes[:, 0].long())


def test_pq_search_is_the_asymmetric_distance(vectors):
    database, queries = vectors
    pq = ProductQuantizer(32, 8, 4).train(database, iterations=5)
    codes = pq.encode(database)
    distances, _ = pq.search(queries[:10], codes, k=5, batch_size=777)
    brute = torch.cdist(queries[:10], pq.decode(codes)).square()
    torch.testing.assert_close(distances, brute.topk(5, largest=False).values, rtol=1e-4, atol=1e-4)


def test_pq_recall_close_to_faiss(vectors):
    database, queries = vectors
    truth = exact_knn(queries, database, 1)
    pq = ProductQuantizer(32, 8, 6).train(database, iterations=20)
    _, ours = pq.search(queries, pq.encode(database), k=10)
    index = faiss.IndexPQ(32, 8, 6)
    index.train(database.numpy())
    index.add(database.numpy())
    _, theirs = index.search(queries.numpy(), 10)
    assert abs(recall_at(ours, truth, 10) - recall_at(torch.from_numpy(theirs), truth, 10)) <= 0.05


def test_lsh_recall_floor_and_more_tables_help(vectors):
    database, queries = vectors
    truth = exact_cosine_knn(queries, database, 10)
    few = overlap_recall(HyperplaneLSH(32, bits=10, tables=2).add(database).search(queries, 10)[0], truth)
    many_found, counts = HyperplaneLSH(32, bits=10, tables=16).add(database).search(queries, 10)
    many = overlap_recall(many_found, truth)
    assert many >= 0.9 > few
    assert counts.float().mean() < len(database) / 2           # it does not scan everything


def test_lsh_with_every_point_a_candidate_is_exact(vectors):
    database, queries = vectors
    found, counts = HyperplaneLSH(32, bits=1, tables=40).add(database).search(queries, 10)
    assert torch.equal(counts, torch.full_like(counts, len(database)))
    assert overlap_recall(found, exact_cosine_knn(queries, database, 10)) == 1.0


@pytest.mark.parametrize(("call", "message"), [
    (lambda: dbscan(torch.empty(0, 2), 0.3), "empty"),
    (lambda: dbscan(torch.zeros(5, 2), 0.0), "eps"),
    (lambda: dbscan(torch.zeros(5, 2), -0.3), "eps"),
    (lambda: dbscan(torch.zeros(5, 2), 0.3, min_samples=0), "min_samples"),
    (lambda: ProductQuantizer(30, 8), "divide"),
    (lambda: ProductQuantizer(32, 8).encode(torch.zeros(3, 32)), "train"),
    (lambda: ProductQuantizer(32, 8, 8).train(torch.zeros(100, 32)), "2\\^nbits"),
    (lambda: HyperplaneLSH(8, bits=0), "bits"),
    (lambda: HyperplaneLSH(8).search(torch.zeros(1, 8)), "add"),
    (lambda: exact_knn(torch.zeros(2, 3), torch.zeros(4, 3), 5), "k=5"),
])
def test_clear_errors(call, message):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=message):
        call()
