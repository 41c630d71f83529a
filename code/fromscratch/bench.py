"""One timing helper for every post and benchmark: warm-up, interleaved rounds, spread, CUDA sync."""

from __future__ import annotations

import contextlib
import os
import re
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
    rounds: list[int] = field(default_factory=list)  # the round of each time, when timed in rounds

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def quartiles(self) -> tuple[float, float]:
        """First and third quartile of the times: the middle half of the calls lies between."""
        return quartiles(self.times)

    def by_round(self) -> dict[int, float]:
        """The median time of each round."""
        grouped: dict[int, list[float]] = {}
        for round_, seconds in zip(self.rounds, self.times, strict=True):
            grouped.setdefault(round_, []).append(seconds)
        return {round_: statistics.median(values) for round_, values in grouped.items()}

    def __repr__(self) -> str:
        return f"Timing({self.name!r}, median={format_seconds(self.median)}, n={len(self.times)})"


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartile (inclusive method; one value is its own quartiles)."""
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


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


def interleaved(candidates: dict[str, Callable[[], Any]], rounds: int, repeats: int = 1,
                warmup: int = 1, device: str | torch.device = "cpu") -> dict[str, Timing]:
    """Like `interleaved_times`, as one `Timing` per candidate that remembers each call's round."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    times = interleaved_times(candidates, rounds, repeats, warmup, device)
    return {name: Timing(name, values, [i // repeats for i in range(len(values))])
            for name, values in times.items()}


def round_ratios(timing: Timing, reference: Timing) -> list[float]:
    """Per round: `timing`'s median over `reference`'s median in the same round (paired ratios)."""
    ours, theirs = timing.by_round(), reference.by_round()
    common = sorted(set(ours) & set(theirs))
    if not common:
        raise ValueError(f"{timing.name!r} and {reference.name!r} share no round; time them with "
                         "`interleaved`")
    return [ours[r] / theirs[r] for r in common]


def timing_table(timings: dict[str, Timing], reference: str | None = None,
                 threads: dict[str, Any] | None = None, flop: float | None = None) -> list[dict[str, Any]]:
    """Rows for `table`: per candidate its threads, median, interquartile range and call count.

    With `reference`, the time ratio is the median of the per-round paired ratios, with their
    interquartile range; with `flop`, the GFLOP/s of the median time.
    """
    if reference is not None and reference not in timings:
        raise ValueError(f"reference {reference!r} is not among the timings {sorted(timings)}")
    rows = []
    for name, timing in timings.items():
        q1, q3 = timing.quartiles
        row: dict[str, Any] = {"candidate": name}
        if threads is not None:
            row["threads"] = threads.get(name, "-")
        row |= {"median": format_seconds(timing.median),
                "middle half of calls": f"{format_seconds(q1)} – {format_seconds(q3)}",
                "calls": len(timing.times)}
        if flop is not None:
            row["GFLOP/s"] = f"{gflops(flop, timing.median):.3g}"
        if reference is not None:
            ratios = round_ratios(timing, timings[reference])
            r1, r3 = quartiles(ratios)
            row[f"time / {reference}"] = f"{statistics.median(ratios):.3g} ({r1:.3g} – {r3:.3g})"
        rows.append(row)
    return rows


def thread_counts() -> dict[str, int | str]:
    """The thread pools that timings on this CPU depend on: torch's intra-op pool, numba's if loaded."""
    counts: dict[str, int | str] = {"torch": torch.get_num_threads()}
    numba = sys.modules.get("numba")
    if numba is not None:
        counts["numba"] = numba.get_num_threads()
    return counts


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


def markdown_literal(text: str) -> str:
    """`text` made safe in a Markdown table cell: `|` would end the cell, and Pandoc reads
    `@word` outside code spans as a citation, so both are escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(part if part.startswith("`") else part.replace("@", "\\@")
                   for part in parts).replace("|", "\\|")


def table(rows: Sequence[dict[str, Any]], floatfmt: str = ".3g") -> str:
    """A markdown table of `rows` (list of dicts sharing keys), numbers formatted."""
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(value: Any) -> str:
        text = format(value, floatfmt) if isinstance(value, float) else str(value)
        return markdown_literal(text)

    lines = ["| " + " | ".join(map(markdown_literal, keys)) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)
