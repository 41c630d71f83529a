"""The timing helper: repeats, medians, ratios, memory peaks (correctness, never speed)."""

import pytest
import torch

from fromscratch import bench
from fromscratch.bench import compare, format_seconds, gflops, peak_memory_bytes, table, timeit


def test_timeit_counts_warmup_and_repeats() -> None:
    calls = []
    timing = timeit(lambda: calls.append(1), "append", warmup=2, repeats=4)
    assert len(calls) == 6 and len(timing.times) == 4
    assert timing.best <= timing.median


def test_timeit_keeps_going_until_min_time() -> None:
    timing = timeit(lambda: sum(range(100)), repeats=1, warmup=0, min_time=0.01)
    assert sum(timing.times) >= 0.01 and len(timing.times) > 1


def test_bad_repeats_are_refused() -> None:
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        timeit(lambda: None, repeats=0)


class FakeClock:
    """A perf_counter that moves only when a candidate says it worked: timings exact, load-proof."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float) -> None:
        self.now += seconds


def test_compare_reports_ratio_to_reference(monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    rows = compare({"one": lambda: clock.work(0.002), "tenfold": lambda: clock.work(0.02)},
                   reference="one", repeats=3)
    ratios = {row["name"]: row["ratio_to_one"] for row in rows}
    assert ratios["one"] == 1.0 and ratios["tenfold"] == pytest.approx(10.0)
    assert {row["name"]: row["median_s"] for row in rows} == pytest.approx({"one": 0.002, "tenfold": 0.02})
    with pytest.raises(ValueError, match="reference 'other' is not among"):
        compare({"a": lambda: None}, reference="other")


def test_peak_memory_sees_the_temporaries() -> None:
    x = torch.randn(1000, 1000)
    out_bytes = 1000 * 1000 * 4
    assert out_bytes <= peak_memory_bytes(lambda: x @ x) < 1.1 * out_bytes
    two_temporaries = peak_memory_bytes(lambda: ((x * 2) + 1).sum())
    assert 2 * out_bytes <= two_temporaries < 2.2 * out_bytes


def test_formatting_helpers() -> None:
    assert format_seconds(0.0032) == "3.2 ms" and format_seconds(2.0) == "2 s"
    assert format_seconds(5e-7) == "500 ns"
    assert gflops(2e9, 0.5) == 4.0
    assert table([{"name": "a", "x": 0.5}]).splitlines() == ["| name | x |", "|---|---|", "| a | 0.5 |"]


def test_interleaved_times_alternate_after_warmup() -> None:
    from fromscratch.bench import interleaved_times

    calls: list[str] = []
    times = interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                              rounds=3, repeats=2, warmup=1)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3
    assert {name: len(t) for name, t in times.items()} == {"a": 6, "b": 6}


def test_interleaved_records_rounds_and_paired_ratios() -> None:
    from fromscratch.bench import interleaved, round_ratios

    timings = interleaved({"a": lambda: None, "b": lambda: None}, rounds=3, repeats=2, warmup=0)
    assert timings["a"].rounds == [0, 0, 1, 1, 2, 2]
    timings["a"].times = [1.0, 3.0, 4.0, 4.0, 9.0, 9.0]  # round medians 2, 4, 9
    timings["b"].times = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]  # round medians 1, 2, 3
    assert round_ratios(timings["a"], timings["b"]) == [2.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        interleaved({"a": lambda: None}, rounds=0)


def test_timing_table_reports_spread_threads_and_ratio() -> None:
    from fromscratch.bench import Timing, quartiles, timing_table

    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 4.0) and quartiles([7.0]) == (7.0, 7.0)
    fast = Timing("fast", [1e-3, 2e-3, 3e-3], [0, 1, 2])
    slow = Timing("slow", [4e-3, 4e-3, 9e-3], [0, 1, 2])
    rows = timing_table({"fast": fast, "slow": slow}, reference="fast", threads={"fast": 2}, flop=2e6)
    assert rows[0] == {"candidate": "fast", "threads": 2, "median": "2 ms",
                       "middle half of calls": "1.5 ms – 2.5 ms", "calls": 3, "GFLOP/s": "1",
                       "time / fast": "1 (1 – 1)"}
    assert rows[1]["threads"] == "-" and rows[1]["time / fast"] == "3 (2.5 – 3.5)"  # ratios 4, 2, 3
    with pytest.raises(ValueError, match="reference 'other' is not among"):
        timing_table({"fast": fast}, reference="other")


def test_thread_counts_names_torch() -> None:
    from fromscratch.bench import thread_counts

    assert thread_counts()["torch"] == torch.get_num_threads()
