"""One timing helper for every post and benchmark: warm-up, repeats, median, CUDA sync."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fromscratch.device import synchronize


@dataclass
class Timing:
    """Wall-clock times of repeated calls, in seconds."""

    name: str
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    def __repr__(self) -> str:
        return f"Timing({self.name!r}, median={format_seconds(self.median)}, n={len(self.times)})"


def format_seconds(seconds: float) -> str:
    """Seconds in the unit a reader grasps at a glance: '3.2 ms', '850 µs', '1.4 s'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def timeit(fn: Callable[[], Any], name: str = "", *, warmup: int = 1, repeats: int = 5,
           min_time: float = 0.0, device: str | torch.device = "cpu") -> Timing:
    """Time `fn()`: `warmup` untimed calls, then at least `repeats` timed calls.

    Calls continue past `repeats` until their total reaches `min_time` seconds, so that very
    fast functions are measured over many calls. On CUDA every call is synchronised.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats=} {warmup=}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    timing = Timing(name or getattr(fn, "__name__", "fn"))
    while len(timing.times) < repeats or sum(timing.times) < min_time:
        start = time.perf_counter()
        fn()
        synchronize(device)
        timing.times.append(time.perf_counter() - start)
    return timing


def interleaved_times(candidates: dict[str, Callable[[], Any]], rounds: int, repeats: int = 1,
                      warmup: int = 1, device: str | torch.device = "cpu") -> dict[str, list[float]]:
    """Seconds per call of each candidate, timed in alternating rounds so load hits all alike."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            times[name] += timeit(fn, name, warmup=0, repeats=repeats, device=device).times
    return times


def compare(candidates: dict[str, Callable[[], Any]], reference: str, **timeit_kwargs: Any
            ) -> list[dict[str, Any]]:
    """Time each candidate and report its median and its ratio to `reference` (>1 = slower)."""
    if reference not in candidates:
        raise ValueError(f"reference {reference!r} is not among the candidates "
                         f"{sorted(candidates)}")
    timings = {name: timeit(fn, name, **timeit_kwargs) for name, fn in candidates.items()}
    ref = timings[reference].median
    return [{"name": name, "median_s": t.median, "ratio_to_" + reference: t.median / ref}
            for name, t in timings.items()]


def peak_memory_bytes(fn: Callable[[], Any], device: str | torch.device = "cpu") -> int:
    """Peak bytes that torch allocates while `fn()` runs, above what was live before it.

    CUDA reads the caching allocator's counters; the CPU replays the allocation and free
    events that the torch profiler records, in time order.
    """
    device = torch.device(device)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    activities = [torch.profiler.ProfilerActivity.CPU]
    with quiet_stderr(), torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2, where the torch profiler's C++ code logs its start and stop."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def gflops(flop: float, seconds: float) -> float:
    """Throughput in GFLOP/s."""
    return flop / seconds / 1e9


def table(rows: Sequence[dict[str, Any]], floatfmt: str = ".3g") -> str:
    """A markdown table of `rows` (list of dicts sharing keys), numbers formatted."""
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(value: Any) -> str:
        return format(value, floatfmt) if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)
