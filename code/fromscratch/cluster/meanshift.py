"""Mean shift in torch, batched so memory stays bounded: full, k-nearest-neighbour and landmark variants.

    result = mean_shift(x, bandwidth=2.5)                  # every point climbs the data's density
    result = landmark_mean_shift(x, bandwidth=2.5)         # the same modes, from m << n landmarks
    result.labels, result.centers

Each point moves to the kernel-weighted mean of a reference set, again and again, until it stops
at a mode of the kernel density estimate; points that stop at the same mode form a cluster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from fromscratch.cluster._checks import (
    check_count,
    check_points,
    check_positive,
    row_batches,
    squared_distances,
)

# exp(-80) ~ 1.8e-35 is still a normal float32: below about -87 exp returns subnormals, which
# the CPU computes many times more slowly. A weight of 1e-35 changes no mean that matters.
EXP_FLOOR = -80.0


def gaussian(d2: Tensor, bandwidth: float) -> Tensor:
    """Gaussian kernel weights exp(-d^2 / 2h^2) from squared distances (in place on `d2`)."""
    return d2.mul_(-0.5 / bandwidth**2).clamp_(min=EXP_FLOOR).exp_()


def triangular(d2: Tensor, bandwidth: float) -> Tensor:
    """Triangular kernel weights max(0, 1 - d/h) from squared distances (in place on `d2`)."""
    return d2.clamp_(min=0).sqrt_().mul_(-1 / bandwidth).add_(1).clamp_(min=0)


KERNELS: dict[str, Callable[[Tensor, float], Tensor]] = {"gaussian": gaussian, "triangular": triangular}


@dataclass
class MeanShiftResult:
    """Where each point ended (`modes`), its cluster (`labels`, 0 = largest) and the `centers`."""

    labels: Tensor
    centers: Tensor
    modes: Tensor
    iterations: int

    @property
    def n_clusters(self) -> int:
        return self.centers.shape[0]


def kernel_by_name(kernel: str) -> Callable[[Tensor, float], Tensor]:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; use one of {', '.join(KERNELS)}")
    return KERNELS[kernel]


def augmented(points: Tensor, reference: Tensor, weights: Tensor | None
              ) -> tuple[Tensor, Tensor, Tensor]:
    """Matrices whose product is all squared distances, and the weighted reference with a count.

    [a, |a|^2, 1] . [-2b, 1, |b|^2] = |a - b|^2: one matrix product gives the whole block, with
    no extra passes to add the norms. The last column of [w b, w] sums the weights, so a second
    product gives each kernel mean's numerator and denominator at once.
    """
    ones = torch.ones(len(points), 1, dtype=points.dtype, device=points.device)
    left = torch.cat([points, (points * points).sum(1, keepdim=True), ones], 1)
    ref_ones = torch.ones(len(reference), 1, dtype=reference.dtype, device=reference.device)
    right = torch.cat([-2 * reference, ref_ones, (reference * reference).sum(1, keepdim=True)], 1)
    w = ref_ones if weights is None else weights[:, None].to(reference.dtype)
    return left, right, torch.cat([w * reference, w], 1)


def shift(points: Tensor, reference: Tensor, bandwidth: float, kernel: str = "gaussian",
          weights: Tensor | None = None, batch_size: int = 256) -> Tensor:
    """One mean-shift step: each point moves to the kernel-weighted mean of `reference`.

    Works on `batch_size` points at a time, so memory is batch_size x len(reference), never n x n,
    in one buffer reused by every batch. Per batch: one product for the squared distances, the
    kernel in place, one product for the weighted sums. `weights` (one per reference point)
    count a landmark that stands for several points. A point with no reference point inside a
    triangular kernel's support stays where it is.
    """
    weigh = kernel_by_name(kernel)
    left, right, sums_of = augmented(points, reference, weights)
    buffer = torch.empty(min(batch_size, len(points)), len(reference), dtype=points.dtype,
                         device=points.device)
    moved = torch.empty_like(points)
    for rows in row_batches(len(points), batch_size):
        d2 = torch.mm(left[rows], right.T, out=buffer[: rows.stop - rows.start])
        sums = weigh(d2, bandwidth) @ sums_of
        total = sums[:, -1:]
        mean = sums[:, :-1] / total.clamp(min=torch.finfo(sums.dtype).tiny)
        moved[rows] = torch.where(total > 0, mean, points[rows])
    return moved


def climb(seeds: Tensor, reference: Tensor, bandwidth: float, kernel: str = "gaussian",
          weights: Tensor | None = None, max_iter: int = 300, tol: float | None = None,
          batch_size: int = 256) -> tuple[Tensor, int]:
    """Shift `seeds` towards `reference` until each moves less than `tol` (default 1e-3 h).

    Points that have stopped are set aside, so late iterations only move the stragglers.
    Returns the final positions and the number of iterations run.
    """
    tol = 1e-3 * bandwidth if tol is None else tol
    return iterate(seeds, lambda before: shift(before, reference, bandwidth, kernel, weights,
                                               batch_size), tol, max_iter)


def iterate(start: Tensor, step, tol: float, max_iter: int) -> tuple[Tensor, int]:
    """Apply `step` to the points still moving until each moves less than `tol`; returns the
    final positions and the number of iterations run."""
    modes = start.clone()
    active = torch.arange(len(start), device=start.device)
    iteration = 0
    while len(active) and iteration < max_iter:
        iteration += 1
        before = modes[active]
        after = step(before)
        modes[active] = after
        active = active[(after - before).norm(dim=1) >= tol]
    return modes, iteration


def group_modes(modes: Tensor, radius: float) -> tuple[Tensor, Tensor]:
    """Merge modes closer than `radius`: labels (0 = most points) and one center per cluster.

    Modes are first binned on a grid of radius/4 cells (converged modes share a cell), then the
    cells are merged greedily, most populated first, as scikit-learn merges its seeds.
    """
    cells, cell_of = torch.unique(torch.floor(modes / (radius / 4)), dim=0, return_inverse=True)
    counts = torch.bincount(cell_of, minlength=len(cells)).to(modes.dtype)
    means = torch.zeros(len(cells), modes.shape[1], dtype=modes.dtype, device=modes.device)
    means.index_add_(0, cell_of, modes).div_(counts[:, None])
    order = torch.argsort(counts, descending=True, stable=True)
    cluster_of_cell = torch.full((len(cells),), -1, dtype=torch.long, device=modes.device)
    centers = []
    for cell in order.tolist():
        if cluster_of_cell[cell] >= 0:
            continue
        near = ((means - means[cell]) ** 2).sum(1) <= radius**2
        cluster_of_cell[near & (cluster_of_cell < 0)] = len(centers)
        centers.append(means[cell])
    labels = cluster_of_cell[cell_of]
    return relabel_by_size(labels, torch.stack(centers))


def relabel_by_size(labels: Tensor, centers: Tensor) -> tuple[Tensor, Tensor]:
    """Renumber clusters so that 0 is the largest (ties by old number)."""
    sizes = torch.bincount(labels, minlength=len(centers))
    order = torch.argsort(sizes, descending=True, stable=True)
    new_of_old = torch.empty_like(order)
    new_of_old[order] = torch.arange(len(order), device=labels.device)
    return new_of_old[labels], centers[order]


def check_mean_shift_args(x: Tensor, bandwidth: float, kernel: str, batch_size: int) -> Tensor:
    x = check_points(x)
    check_positive(bandwidth, "bandwidth")
    kernel_by_name(kernel)
    check_count(batch_size, "batch_size")
    return x


def mean_shift(x: Tensor, bandwidth: float, kernel: str = "gaussian", max_iter: int = 300,
               tol: float | None = None, merge_radius: float | None = None,
               batch_size: int = 256) -> MeanShiftResult:
    """Full mean shift: every point climbs the kernel density of all n points, O(n^2) per pass.

    Points whose modes lie within `merge_radius` (default: the bandwidth) share a cluster.
    """
    x = check_mean_shift_args(x, bandwidth, kernel, batch_size)
    modes, iterations = climb(x, x, bandwidth, kernel, None, max_iter, tol, batch_size)
    labels, centers = group_modes(modes, merge_radius or bandwidth)
    return MeanShiftResult(labels, centers, modes, iterations)


def nearest(queries: Tensor, reference: Tensor, k: int, batch_size: int = 256) -> Tensor:
    """Indices of the `k` nearest reference points of each query (exact, batched), shape (q, k)."""
    ref_sq = (reference * reference).sum(1)
    found = torch.empty(len(queries), k, dtype=torch.long, device=queries.device)
    for rows in row_batches(len(queries), batch_size):
        d2 = squared_distances(queries[rows], reference, ref_sq)
        found[rows] = d2.topk(k, dim=1, largest=False, sorted=True).indices
    return found


def knn_mean_shift(x: Tensor, bandwidth: float, k: int = 64, kernel: str = "gaussian",
                   max_iter: int = 300, tol: float | None = None, merge_radius: float | None = None,
                   search: Callable[[Tensor, int], Tensor] | None = None,
                   batch_size: int = 256) -> MeanShiftResult:
    """Mean shift where each point moves to the kernel mean of only its `k` nearest data points.

    The kernel sum costs O(nk) instead of O(n^2) (`search(queries, k)` may be an approximate
    index; by default it is exact). The catch, shown in the mean-shift post: every local patch
    whose k points' mean lies inside the patch is a fixed point, so clusters fragment.
    """
    x = check_mean_shift_args(x, bandwidth, kernel, batch_size)
    check_count(k, "k", 1, len(x), "the number of points")
    search = search or (lambda queries, kk: nearest(queries, x, kk, batch_size))
    weigh = kernel_by_name(kernel)
    tol = 1e-3 * bandwidth if tol is None else tol

    def step(before: Tensor) -> Tensor:
        neighbours = x[search(before, k)]                        # (a, k, d)
        w = weigh(((neighbours - before[:, None]) ** 2).sum(2), bandwidth)
        total = w.sum(1, keepdim=True)
        mean = (w[:, :, None] * neighbours).sum(1) / total.clamp(min=torch.finfo(w.dtype).tiny)
        return torch.where(total > 0, mean, before)

    modes, iteration = iterate(x, step, tol, max_iter)
    labels, centers = group_modes(modes, merge_radius or bandwidth)
    return MeanShiftResult(labels, centers, modes, iteration)


def landmark_mean_shift(x: Tensor, bandwidth: float, n_landmarks: int = 1024, kernel: str = "gaussian",
                        kmeans_iterations: int = 5, max_iter: int = 300, tol: float | None = None,
                        merge_radius: float | None = None, seed: int = 0, shift_points: bool = True,
                        batch_size: int = 256) -> MeanShiftResult:
    """Mean shift on m landmarks that stand for the data: O(nm) per pass instead of O(n^2).

    1. Landmarks: k-means codewords of the data (m = `n_landmarks`), each weighted by the number
       of points it stands for, so the weighted kernel density of the landmarks approximates the
       density of all n points.
    2. Every point climbs that weighted density (its kernel mean is over the m landmarks, a
       fixed reference set: unlike the k-nearest-neighbour variant, a point's reference does
       not move with it, so it cannot stall on a local bump of its own neighbourhood).
    3. Modes closer than `merge_radius` (default: the bandwidth) share a cluster.

    With `shift_points=False`, step 2 shifts only the m landmarks, O(m^2) per pass, and every
    point takes the mode of its landmark: the k-means iterations are then the whole cost of
    O(n), and points on a boundary between two basins follow their landmark's side.

    Memory stays within that of full mean shift's blocks (`batch_size` x n numbers): with m
    columns instead of n, a block holds batch_size x n / m rows, and fewer, larger blocks keep
    the per-call overhead of many small operations down.
    """
    from fromscratch.cluster.kmeans import kmeans

    x = check_mean_shift_args(x, bandwidth, kernel, batch_size)
    check_count(n_landmarks, "n_landmarks")
    m = min(n_landmarks, len(x))
    rows = max(batch_size, batch_size * len(x) // m)
    fit = kmeans(x, m, iterations=kmeans_iterations, init="random", seed=seed)   # its own block size
    counts = torch.bincount(fit.labels, minlength=m).to(x.dtype)
    keep = counts > 0
    landmarks, weights = fit.centroids[keep], counts[keep]
    seeds = x if shift_points else landmarks
    modes, iterations = climb(seeds, landmarks, bandwidth, kernel, weights, max_iter, tol, rows)
    if not shift_points:
        landmark_of_point = torch.cumsum(keep, 0)[fit.labels] - 1     # renumbered without empty ones
        modes = modes[landmark_of_point]
    labels, centers = group_modes(modes, merge_radius or bandwidth)
    return MeanShiftResult(labels, centers, modes, iterations)


def course_blobs(n_clusters: int = 6, n_per_cluster: int = 250, variance: float = 5.0,
                 spread: float = 70.0, seed: int = 42, dtype: torch.dtype = torch.float32
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussian blobs in 2-D as in the fastai course: centroids uniform in a square of side `spread`.

    Returns the points (n_clusters * n_per_cluster, 2), their true labels and the centroids.
    """
    check_count(n_clusters, "n_clusters")
    check_count(n_per_cluster, "n_per_cluster")
    check_positive(variance, "variance")
    generator = torch.Generator().manual_seed(seed)
    centroids = torch.rand(n_clusters, 2, generator=generator, dtype=dtype) * spread - spread / 2
    noise = torch.randn(n_clusters, n_per_cluster, 2, generator=generator, dtype=dtype)
    points = (centroids[:, None, :] + math.sqrt(variance) * noise).reshape(-1, 2)
    labels = torch.arange(n_clusters).repeat_interleave(n_per_cluster)
    return points, labels, centroids
