"""DBSCAN in torch: batched neighbour counting, core points, connected components by min-label passes.

    labels = dbscan(x, eps=0.3, min_samples=10)     # -1 marks noise

The labels equal scikit-learn's exactly (not only up to renaming): clusters are numbered in the
order of their first core point, and a border point within eps of several clusters joins the
one numbered first, which is the cluster scikit-learn's scan reaches it from first.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fromscratch.cluster._checks import check_count, check_points, check_positive, row_batches


def within(a: Tensor, b: Tensor, eps: float) -> Tensor:
    """Boolean (len(a), len(b)): |a_i - b_j| <= eps, distances from coordinate differences.

    Differences, not the |a|^2 + |b|^2 - 2ab trick: its rounding would move points that sit
    exactly at eps (grids, duplicates) to the wrong side, where scikit-learn keeps them in.
    """
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist") <= eps


def neighbour_counts(x: Tensor, eps: float, batch_size: int = 1024) -> Tensor:
    """Number of points within eps of each point, itself included."""
    counts = torch.empty(len(x), dtype=torch.long, device=x.device)
    for rows in row_batches(len(x), batch_size):
        counts[rows] = within(x[rows], x, eps).sum(1)
    return counts


def core_edges(core_points: Tensor, eps: float, batch_size: int = 1024) -> Tensor:
    """Pairs (i, j), i < j, of core points within eps of each other: shape (2, edges)."""
    pairs = []
    for rows in row_batches(len(core_points), batch_size):
        i, j = within(core_points[rows], core_points, eps).nonzero(as_tuple=True)
        i = i + rows.start
        keep = i < j
        pairs.append(torch.stack([i[keep], j[keep]]))
    return torch.cat(pairs, 1)


def components(n: int, edges: Tensor) -> Tensor:
    """Connected components of a graph on n nodes: each node gets the smallest node id of its
    component. Alternate min-label passes over the edges with pointer jumping until stable."""
    label = torch.arange(n, device=edges.device)
    src, dst = edges
    while True:
        before = label.clone()
        smaller = torch.minimum(label[src], label[dst])
        label.scatter_reduce_(0, src, smaller, reduce="amin")
        label.scatter_reduce_(0, dst, smaller, reduce="amin")
        while True:                                  # jump to the label's label until it stops
            jumped = label[label]
            if torch.equal(jumped, label):
                break
            label = jumped
        if torch.equal(label, before):
            return label


def dbscan(x: Tensor, eps: float, min_samples: int = 5, batch_size: int = 1024) -> Tensor:
    """Cluster labels of DBSCAN [Ester et al. 1996]; -1 marks noise.

    A core point has at least `min_samples` points (itself included) within `eps`; core points
    within eps of each other share a cluster; a non-core point within eps of a core point joins
    that cluster (the first-numbered one if there are several); the rest is noise.
    Memory: batch_size x n booleans at a time, plus the list of core-core pairs.
    """
    x = check_points(x)
    check_positive(eps, "eps")
    check_count(min_samples, "min_samples")
    is_core = neighbour_counts(x, eps, batch_size) >= min_samples
    labels = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
    core_index = is_core.nonzero()[:, 0]
    if len(core_index) == 0:
        return labels
    core_points = x[core_index]
    root = components(len(core_index), core_edges(core_points, eps, batch_size))
    roots, cluster = torch.unique(root, return_inverse=True)          # numbered by first core point
    labels[core_index] = cluster
    border = (~is_core).nonzero()[:, 0]
    for rows in row_batches(len(border), batch_size):
        near = within(x[border[rows]], core_points, eps)
        first = torch.where(near, cluster[None, :], len(roots)).min(1).values
        labels[border[rows]] = torch.where(first < len(roots), first, -1)
    return labels
