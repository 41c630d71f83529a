"""Argument checks and the batched distance helpers that every clustering module shares."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


def check_points(x: Tensor, name: str = "x") -> Tensor:
    """`x` as a floating (n, d) tensor with n >= 1; one clear error otherwise."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, d), got {type(x).__name__}; "
                        "convert with torch.as_tensor")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d) (2 dimensions), got shape {tuple(x.shape)}; "
                         "reshape a single point with x[None] or flatten extra axes")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one point "
                         "with at least one coordinate")
    if not x.is_floating_point():
        x = x.float()
    return x


def check_positive(value: float, name: str) -> float:
    """`value` if it is a finite number above zero; one clear error otherwise."""
    if not (isinstance(value, (int, float)) and value > 0 and value != float("inf")):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_count(value: int, name: str, low: int = 1, high: int | None = None,
                high_name: str = "") -> int:
    """`value` if it is an integer in [low, high]; one clear error otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name}={value} is larger than {high_name or high} ({high}); "
                         f"lower {name}")
    return value


def row_batches(n: int, batch_size: int) -> Iterator[slice]:
    """Slices of [0, n) of at most `batch_size` rows each."""
    check_count(batch_size, "batch_size")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def squared_distances(a: Tensor, b: Tensor, b_sq: Tensor | None = None,
                      out: Tensor | None = None) -> Tensor:
    """|a_i - b_j|^2 for every pair, as |a|^2 + |b|^2 - 2 a.b (one matrix product), clamped at 0.

    `b_sq` (the squared norms of `b`) can be passed in when `b` is reused across batches, and
    `out` is a buffer to write into, so that a loop over row batches does not allocate afresh.
    """
    if b_sq is None:
        b_sq = (b * b).sum(1)
    if out is not None:
        out = out[: a.shape[0]]
    d2 = torch.addmm(b_sq[None, :], a, b.T, beta=1, alpha=-2, out=out)
    d2.add_((a * a).sum(1, keepdim=True))
    return d2.clamp_(min=0)
