"""Benchmark: conv2d as im2col + matmul (strided view; F.unfold) against F.conv2d, forward and backward."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from fromscratch import conv
from fromscratch.bench import interleaved, quartiles, round_ratios
from fromscratch.device import resolve_device

# (N, C, H, W, out channels, kernel, stride, padding, groups): the layers of a small CNN, a wide
# 3x3 layer and a depthwise one
FULL_SHAPES = ((64, 1, 28, 28, 32, 3, 1, 1, 1), (64, 32, 28, 28, 64, 3, 2, 1, 1),
               (64, 64, 14, 14, 128, 3, 2, 1, 1), (32, 64, 56, 56, 64, 3, 1, 1, 1),
               (32, 64, 56, 56, 64, 3, 1, 1, 64))
QUICK_SHAPES = ((64, 1, 8, 8, 16, 3, 1, 1, 1), (64, 16, 8, 8, 32, 3, 2, 1, 1),
                (16, 32, 28, 28, 32, 3, 1, 1, 32))
CANDIDATES = {"im2col": conv.conv2d, "unfold": conv.conv2d_unfold, "torch": F.conv2d}


def forward_and_backward(fn: Callable[..., torch.Tensor], x: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor, **kwargs: Any) -> Callable[[], None]:
    """A call that runs `fn` and back-propagates to the input, weight and bias."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]

    def step() -> None:
        fn(*leaves, **kwargs).sum().backward()
        for leaf in leaves:
            leaf.grad = None

    return step


def measure(shape: Sequence[int], device: str = "cpu", rounds: int = 5, repeats: int = 3,
            seed: int = 0) -> dict[str, Any]:
    """One row: largest differences from F.conv2d and time ratios, forward and forward+backward."""
    n, c, h, w, o, k, s, p, g = shape
    dev = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=generator).to(dev)
    weight = (torch.randn(o, c // g, k, k, generator=generator) / (c // g * k * k) ** 0.5).to(dev)
    bias = torch.randn(o, generator=generator).to(dev)
    kwargs = {"stride": s, "padding": p, "groups": g}
    reference = F.conv2d(x, weight, bias, **kwargs)
    row: dict[str, Any] = {"shape": list(shape), "device": dev.type,
                           "max_abs_output": reference.abs().max().item()}
    for name in ("im2col", "unfold"):
        ours = CANDIDATES[name](x, weight, bias, **kwargs)
        row[f"{name}_max_abs_diff"] = (ours - reference).abs().max().item()
    calls = {f"{name}_forward": (lambda fn=fn: fn(x, weight, bias, **kwargs))
             for name, fn in CANDIDATES.items()}
    calls |= {f"{name}_fwd_bwd": forward_and_backward(fn, x, weight, bias, **kwargs)
              for name, fn in CANDIDATES.items()}
    timings = interleaved(calls, rounds, repeats, device=dev)
    for name, timing in timings.items():
        row[f"{name}_s"] = timing.median
    for step in ("forward", "fwd_bwd"):
        for name in ("im2col", "unfold"):
            ratios = round_ratios(timings[f"{name}_{step}"], timings[f"torch_{step}"])
            row[f"ratio_{name}_{step}"] = statistics.median(ratios)
            row[f"ratio_{name}_{step}_q1"], row[f"ratio_{name}_{step}_q3"] = quartiles(ratios)
    return row


def run(quick: bool = False, shapes: Sequence[Sequence[int]] | None = None, device: str = "cpu",
        rounds: int | None = None) -> dict[str, Any]:
    """Ours vs F.conv2d on each shape; the summary holds the median ratios over the shapes."""
    shapes = list(shapes or (QUICK_SHAPES if quick else FULL_SHAPES))
    rounds = rounds or (3 if quick else 7)
    rows = [measure(shape, device, rounds=rounds) | {"threads": torch.get_num_threads()} for shape in shapes]
    summary: dict[str, Any] = {
        f"median_ratio_{name}_{step}": statistics.median(r[f"ratio_{name}_{step}"] for r in rows)
        for name in ("im2col", "unfold") for step in ("forward", "fwd_bwd")}
    summary["max_abs_diff"] = max(max(r["im2col_max_abs_diff"], r["unfold_max_abs_diff"]) for r in rows)
    return {"rows": rows, "summary": summary, "quick": quick}
