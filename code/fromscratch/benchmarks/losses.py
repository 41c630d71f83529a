"""Benchmark: fromscratch's fused cross-entropy against F.cross_entropy, time and peak memory."""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from fromscratch import losses
from fromscratch.bench import interleaved, peak_memory_bytes, quartiles, round_ratios
from fromscratch.device import resolve_device

FULL_SIZES = ((256, 10), (1024, 100), (4096, 1000), (1024, 32000), (8192, 32000))
QUICK_SIZES = ((256, 10), (1024, 100), (4096, 1000))
TARGET_SIZE = (4096, 1000)
TARGET_RATIO = 1.5


def forward_and_backward(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                         logits: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    """A call that computes the loss and its gradient with respect to the logits."""
    leaf = logits.detach().clone().requires_grad_()

    def step() -> None:
        loss_fn(leaf, target).backward()
        leaf.grad = None

    return step


def measure(batch: int, classes: int, dtype: torch.dtype = torch.float32, device: str = "cpu",
            rounds: int = 5, repeats: int = 3, memory: bool = True, seed: int = 0) -> dict[str, Any]:
    """One row of the benchmark: errors, times and peak memory of ours and torch's at one size."""
    dev = resolve_device(device)
    generator = torch.Generator(device=dev).manual_seed(seed)
    logits = torch.randn(batch, classes, generator=generator, device=dev, dtype=dtype) * 3
    target = torch.randint(0, classes, (batch,), generator=generator, device=dev)
    ours, theirs = losses.cross_entropy(logits, target), F.cross_entropy(logits, target)
    row: dict[str, Any] = {"batch": batch, "classes": classes, "dtype": str(dtype).removeprefix("torch."),
                           "device": dev.type,
                           "loss_rel_error": abs(ours.item() - theirs.item()) / abs(theirs.item())}
    candidates = {
        "ours_forward": lambda: losses.cross_entropy(logits, target),
        "torch_forward": lambda: F.cross_entropy(logits, target),
        "ours_fwd_bwd": forward_and_backward(losses.cross_entropy, logits, target),
        "torch_fwd_bwd": forward_and_backward(F.cross_entropy, logits, target),
    }
    timings = interleaved(candidates, rounds, repeats, device=dev)
    for name, timing in timings.items():
        row[f"{name}_s"] = timing.median
        row[f"{name}_best_s"] = timing.best
        row[f"{name}_q1_s"], row[f"{name}_q3_s"] = timing.quartiles
    for step in ("forward", "fwd_bwd"):
        # the best of many alternating calls is the estimate least disturbed by other programs
        row[f"ratio_{step}"] = row[f"ours_{step}_best_s"] / row[f"torch_{step}_best_s"]
        row[f"ratio_{step}_median"] = row[f"ours_{step}_s"] / row[f"torch_{step}_s"]
        # and the spread: ours over torch's in each round, the two timed side by side
        per_round = round_ratios(timings[f"ours_{step}"], timings[f"torch_{step}"])
        row[f"ratio_{step}_rounds_median"] = statistics.median(per_round)
        row[f"ratio_{step}_rounds_q1"], row[f"ratio_{step}_rounds_q3"] = quartiles(per_round)
    row["rounds"] = rounds
    if memory:
        row["ours_peak_bytes"] = peak_memory_bytes(candidates["ours_forward"], dev)
        row["torch_peak_bytes"] = peak_memory_bytes(candidates["torch_forward"], dev)
    return row


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run torch's CPU operations on `threads` threads for a while (None: leave the setting alone)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(quick: bool = False, sizes: Sequence[tuple[int, int]] | None = None, device: str = "cpu",
        dtype: torch.dtype = torch.float32, rounds: int | None = None) -> dict[str, Any]:
    """Ours vs F.cross_entropy at each (batch, classes); the summary holds the ratio at (4096, 1000).

    On the CPU the target size is measured a second time on one thread: on a machine shared with
    other jobs, every parallel region of a multi-threaded operation can wait for a time slice, and
    the one-thread ratio compares the two algorithms without that effect.
    """
    sizes = list(sizes or (QUICK_SIZES if quick else FULL_SIZES))
    if TARGET_SIZE not in sizes:
        sizes.append(TARGET_SIZE)
    rounds = rounds or (3 if quick else 7)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for batch, classes in sizes:
        elements = batch * classes
        repeats = 5 if elements <= 1 << 20 else 3 if elements <= 1 << 23 else 1
        rows.append(measure(batch, classes, dtype, device, rounds=rounds if elements <= 1 << 23 else 3,
                            repeats=repeats) | {"threads": torch.get_num_threads()})
    target = next(r for r in rows if (r["batch"], r["classes"]) == TARGET_SIZE)
    label = f"{TARGET_SIZE[0]}x{TARGET_SIZE[1]}_{target['dtype']}_{target['device']}"
    summary = {
        f"ratio_forward_{label}": target["ratio_forward"],
        f"ratio_forward_median_{label}": target["ratio_forward_median"],
        f"ratio_fwd_bwd_{label}": target["ratio_fwd_bwd"],
        f"ratio_fwd_bwd_median_{label}": target["ratio_fwd_bwd_median"],
        f"peak_memory_ratio_{label}": target["ours_peak_bytes"] / max(target["torch_peak_bytes"], 1),
        "target_ratio": TARGET_RATIO,
        "within_target": target["ratio_forward"] <= TARGET_RATIO,
        "threads": target["threads"],
    }
    if resolve_device(device).type == "cpu":
        with intra_op_threads(1):
            single = measure(*TARGET_SIZE, dtype, device, rounds=rounds, repeats=3, memory=False)
        rows.append(single | {"threads": 1, "ours_peak_bytes": target["ours_peak_bytes"],
                              "torch_peak_bytes": target["torch_peak_bytes"]})
        summary[f"ratio_forward_1thread_{label}"] = single["ratio_forward"]
        summary[f"ratio_fwd_bwd_1thread_{label}"] = single["ratio_fwd_bwd"]
    summary["max_loss_rel_error"] = max(r["loss_rel_error"] for r in rows)
    summary["load_average_1min"] = load_before
    return {"rows": rows, "summary": summary, "quick": quick}
