"""k-means in torch: k-means++ seeding, batched assignment (one matrix product per batch), update.

    fit = kmeans(x, k=256, iterations=20, seed=0)
    fit.centroids, fit.labels, fit.inertia

Assignment never holds more than batch_size x k distances, and reuses one buffer for them:
allocating a fresh block of tens of megabytes for every batch costs page faults by the million.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from fromscratch.cluster._checks import (
    check_count,
    check_points,
    row_batches,
    squared_distances,
)


@dataclass
class KMeansResult:
    """Final centroids, each point's nearest centroid, the sum of squared distances to it."""

    centroids: Tensor
    labels: Tensor
    inertia: float
    iterations: int
    history: list[float] = field(default_factory=list)   # inertia of each assignment


def assign(x: Tensor, centroids: Tensor, batch_size: int = 8192) -> tuple[Tensor, Tensor]:
    """Nearest centroid of every point and the squared distance to it, `batch_size` rows at a time.

    argmin_j |x - c_j|^2 = argmin_j (|c_j|^2 / 2 - x.c_j): one addmm per batch into a reused
    buffer, then `min(1)` gives value and index in one pass (faster than `argmin` on the CPU).
    """
    x = check_points(x)
    centroids = check_points(centroids, "centroids")
    if centroids.shape[1] != x.shape[1]:
        raise ValueError(f"centroids have {centroids.shape[1]} coordinates but x has {x.shape[1]}")
    half_sq = (centroids * centroids).sum(1) / 2
    x_sq = (x * x).sum(1)
    buffer = torch.empty(min(batch_size, len(x)), len(centroids), dtype=x.dtype, device=x.device)
    labels = torch.empty(len(x), dtype=torch.long, device=x.device)
    d2 = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for rows in row_batches(len(x), batch_size):
        scores = torch.addmm(half_sq[None], x[rows], centroids.T, alpha=-1,
                             out=buffer[: rows.stop - rows.start])
        best, labels[rows] = scores.min(1)
        d2[rows] = best.mul_(2).add_(x_sq[rows]).clamp_(min=0)
    return labels, d2


def update(x: Tensor, labels: Tensor, old: Tensor) -> Tensor:
    """Each centroid moves to the mean of its points; a centroid with no points stays put."""
    k = len(old)
    sums = torch.zeros_like(old).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=k).to(x.dtype)
    return torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], old)


def kmeans_plus_plus(x: Tensor, k: int, seed: int = 0, local_trials: int | None = None) -> Tensor:
    """k-means++ seeding [Arthur & Vassilvitskii 2007]: each new centroid drawn with probability
    proportional to the squared distance to the nearest centroid chosen so far.

    Greedy, as scikit-learn does it: `local_trials` candidates (default 2 + ln k) are drawn at
    each step and the one that lowers the total squared distance most is kept.
    """
    x = check_points(x)
    check_count(k, "k", 1, len(x), "the number of points")
    trials = local_trials or 2 + int(math.log(k))
    generator = torch.Generator(device=x.device).manual_seed(seed)
    first = torch.randint(len(x), (1,), generator=generator, device=x.device)
    centroids = [x[first]]
    closest = squared_distances(x, x[first])[:, 0]
    for _ in range(1, k):
        total = closest.sum()
        probs = closest / total if total > 0 else torch.ones_like(closest)
        picks = torch.multinomial(probs, trials, replacement=True, generator=generator)
        candidate = torch.minimum(closest[:, None], squared_distances(x, x[picks]))   # (n, trials)
        best = candidate.sum(0).argmin()
        centroids.append(x[picks[best]][None])
        closest = candidate[:, best]
    return torch.cat(centroids)


def initial_centroids(x: Tensor, k: int, init: str | Tensor, seed: int) -> Tensor:
    if isinstance(init, Tensor):
        if init.shape != (k, x.shape[1]):
            raise ValueError(f"init centroids must have shape {(k, x.shape[1])}, got {tuple(init.shape)}")
        return init.to(x).clone()
    if init == "k-means++":
        return kmeans_plus_plus(x, k, seed)
    if init == "random":
        generator = torch.Generator(device=x.device).manual_seed(seed)
        return x[torch.randperm(len(x), generator=generator, device=x.device)[:k]].clone()
    raise ValueError(f"unknown init {init!r}; use 'k-means++', 'random' or a (k, d) tensor")


def kmeans(x: Tensor, k: int, iterations: int = 25, tol: float = 1e-4,
           init: str | Tensor = "k-means++", seed: int = 0, batch_size: int = 8192) -> KMeansResult:
    """Lloyd's algorithm: assign every point to its nearest centroid, move centroids to the means.

    Runs at most `iterations` updates and stops early when an assignment lowers the inertia by
    less than the fraction `tol` (tol=0: stop only when nothing changes). The returned labels
    and inertia belong to the returned centroids.
    """
    x = check_points(x)
    check_count(k, "k", 1, len(x), "the number of points")
    check_count(iterations, "iterations", 0)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    centroids = initial_centroids(x, k, init, seed)
    labels, d2 = assign(x, centroids, batch_size)
    history = [d2.sum().item()]
    done = 0
    while done < iterations:
        centroids = update(x, labels, centroids)
        labels, d2 = assign(x, centroids, batch_size)
        history.append(d2.sum().item())
        done += 1
        if history[-2] - history[-1] <= tol * history[-2]:
            break
    return KMeansResult(centroids, labels, history[-1], done, history)
