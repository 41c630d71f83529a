"""Benchmark of fromscratch.cluster against faiss and scikit-learn, one command, JSON out.

    python -m fromscratch.cluster.benchmark [--quick] [--threads 2] [--out cluster.json]

Ratios are measured in one run with interleaved rounds: k-means iteration time against
faiss.Kmeans (same data, initial centroids, iterations and threads) and final inertia; PQ
recall@10 and encoding and search time against faiss.IndexPQ (same M, nbits, data; isotropic
clusters in 64-d and points near an 8-d subspace); landmark
mean shift against full mean shift and scikit-learn's MeanShift(bin_seeding=True).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import faiss
import torch
from sklearn.cluster import MeanShift
from sklearn.metrics import adjusted_rand_score

from fromscratch.bench import interleaved_times
from fromscratch.cluster.kmeans import assign, kmeans
from fromscratch.cluster.meanshift import course_blobs, landmark_mean_shift, mean_shift
from fromscratch.cluster.pq import ProductQuantizer, exact_knn, recall_at


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


def kmeans_row(n: int, d: int, k: int, rounds: int) -> dict[str, Any]:
    """Seconds per Lloyd iteration, from the difference of runs with 2 and 7 iterations."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    init = x[torch.randperm(n, generator=g)[:k]].clone()
    x_np, init_np = x.numpy(), init.numpy()

    def ours(iterations: int) -> torch.Tensor:
        return kmeans(x, k, iterations=iterations, tol=0.0, init=init).centroids

    def theirs(iterations: int) -> torch.Tensor:
        km = faiss.Kmeans(d, k, niter=iterations, max_points_per_centroid=n)
        km.train(x_np, init_centroids=init_np)
        return torch.from_numpy(km.centroids)

    runs = interleaved_times({"ours_2": lambda: ours(2), "ours_7": lambda: ours(7),
                              "faiss_2": lambda: theirs(2), "faiss_7": lambda: theirs(7)}, rounds, warmup=0)
    per_round = {name: [(long - short) / 5 for short, long in zip(runs[f"{name}_2"], runs[f"{name}_7"],
                                                                   strict=True)]
                 for name in ("ours", "faiss")}
    per_iteration = {name: statistics.median(values) for name, values in per_round.items()}
    # paired within each round, so load that drifts between rounds cancels out of the ratio
    ratios = [o / f for o, f in zip(per_round["ours"], per_round["faiss"], strict=True)]
    inertia = {name: assign(x, fn(20))[1].sum().item() for name, fn in (("ours", ours), ("faiss", theirs))}
    return {"n": n, "d": d, "k": k, "ours_iteration_s": per_iteration["ours"],
            "faiss_iteration_s": per_iteration["faiss"],
            "iteration_ratio": statistics.median(ratios), "iteration_ratio_by_round": ratios,
            "inertia_20_iterations": inertia,
            "inertia_relative_difference": inertia["ours"] / inertia["faiss"] - 1}


def search_data(n: int, d: int, intrinsic_dim: int | None, generator: torch.Generator) -> torch.Tensor:
    """200 Gaussian clusters in `intrinsic_dim` dimensions (default: d) mapped linearly into d,
    plus a little noise in all d. Real descriptors have a low intrinsic dimension; isotropic
    64-d clusters are the hard case where every neighbour is about as far as every other."""
    dims = intrinsic_dim or d
    centres = torch.randn(200, dims, generator=generator)
    members = torch.randint(200, (n,), generator=generator)
    z = centres[members] + 0.5 * torch.randn(n, dims, generator=generator)
    if intrinsic_dim is None:
        return z
    embedding = torch.randn(dims, d, generator=generator) / dims**0.5
    return z @ embedding + 0.05 * torch.randn(n, d, generator=generator)


def pq_row(n: int, d: int, M: int, nbits: int, n_queries: int, rounds: int,
           intrinsic_dim: int | None = None) -> dict[str, Any]:
    data = search_data(n + n_queries, d, intrinsic_dim, torch.Generator().manual_seed(1))
    database, queries = data[:n], data[n:]
    truth = exact_knn(queries, database, 1)[:, 0]
    ours = ProductQuantizer(d, M, nbits).train(database[: n // 2])
    theirs = faiss.IndexPQ(d, M, nbits)
    theirs.train(database[: n // 2].numpy())
    theirs.add(database.numpy())
    codes = ours.encode(database)
    times = medians(interleaved_times({
        "ours_encode": lambda: ours.encode(database),
        "faiss_encode": lambda: theirs.sa_encode(database.numpy()),
        "ours_search": lambda: ours.search(queries, codes, 10),
        "faiss_search": lambda: theirs.search(queries.numpy(), 10)}, rounds))
    recall = {"ours": recall_at(ours.search(queries, codes, 10)[1], truth, 10),
              "faiss": recall_at(torch.from_numpy(theirs.search(queries.numpy(), 10)[1]), truth, 10)}
    return {"n": n, "d": d, "intrinsic_dim": intrinsic_dim or d, "M": M, "nbits": nbits,
            "queries": n_queries, "recall_at_10": recall,
            "recall_difference": recall["ours"] - recall["faiss"], **times,
            "encode_ratio": times["ours_encode"] / times["faiss_encode"],
            "search_ratio": times["ours_search"] / times["faiss_search"]}


def mean_shift_row(n: int, bandwidth: float = 2.5) -> dict[str, Any]:
    x, y, _ = course_blobs(n_per_cluster=n // 6)
    labels, seconds = {}, {}
    candidates = {"full": lambda: mean_shift(x, bandwidth).labels,
                  "landmark": lambda: landmark_mean_shift(x, bandwidth, n_landmarks=512).labels,
                  "landmarks_only": lambda: landmark_mean_shift(
                      x, bandwidth, n_landmarks=512, kmeans_iterations=2, shift_points=False).labels,
                  "sklearn_bin_seeding": lambda: torch.from_numpy(
                      MeanShift(bandwidth=2 * bandwidth, bin_seeding=True).fit(x.numpy()).labels_)}
    for name, fn in candidates.items():
        times = interleaved_times({name: fn}, rounds=1, warmup=0)
        seconds[name], labels[name] = times[name][0], fn()
    return {"n": len(x), "seconds": seconds,
            "ari_to_truth": {name: adjusted_rand_score(y, lab) for name, lab in labels.items()},
            "ari_vs_full": {name: adjusted_rand_score(labels["full"], lab) for name, lab in labels.items()},
            "speedup_over_full": {name: seconds["full"] / s for name, s in seconds.items()},
            "speedup_over_sklearn": {name: seconds["sklearn_bin_seeding"] / s for name, s in seconds.items()}}


def run(quick: bool = False) -> dict:
    """k-means against faiss, PQ against faiss.IndexPQ, landmark against full mean shift and
    sklearn, at the thread count torch and faiss have now."""
    return {"quick": quick,
            "kmeans": kmeans_row(20_000 if quick else 100_000, 64, 64 if quick else 256,
                                 2 if quick else 7),
            "pq": [pq_row(20_000 if quick else 100_000, 64, 8, 8, 200 if quick else 1000, 3, intrinsic)
                   for intrinsic in (None, 8)],
            "mean_shift": mean_shift_row(6_000 if quick else 50_000)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fromscratch.cluster.benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cluster.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    result = {"threads": args.threads, **run(quick=args.quick)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
