"""Benchmark of the matmul ladder's fast rungs: numba parallel blocked vs torch.matmul, numba CUDA vs cuBLAS.

CPU: 1024 x 1024 float32, the numba `prange` blocked kernel against `torch.matmul` (MKL/oneDNN),
warmed up, then timed in alternating rounds so that a shared machine's load hits both alike.
GPU (only where numba and torch both see one): 4096^3 float32, every numba CUDA kernel of
`CUDA_RUNGS` (naive, tiled, register-tiled) against cuBLAS with TF32 off, so all do true FP32
arithmetic.
"""

from __future__ import annotations

import os
import statistics

import numba
import torch

from fromscratch import matmul as mm
from fromscratch.bench import Timing, gflops, interleaved, quartiles, round_ratios

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def rows_for(timings: dict[str, Timing], flop: int, reference: str) -> list[dict]:
    """One row per candidate: median, quartiles and best seconds, GFLOP/s, and the fraction of the
    reference's throughput as the median of the per-round paired ratios, with their quartiles."""
    key = "fraction_of_" + reference.replace(" ", "_")
    rows = []
    for name, timing in timings.items():
        q1, q3 = timing.quartiles
        fractions = [1 / r for r in round_ratios(timing, timings[reference])]
        f1, f3 = quartiles(fractions)
        rows.append({"name": name, "median_s": timing.median, "q1_s": q1, "q3_s": q3, "best_s": timing.best,
                     "calls": len(timing.times), "gflops": gflops(flop, timing.median),
                     key: statistics.median(fractions), key + "_q1": f1, key + "_q3": f3})
    return rows


def cpu_benchmark(size: int, rounds: int) -> list[dict]:
    """numba parallel blocked against torch.matmul at size x size, float32, on every core.

    Both are warmed up, then timed in alternating rounds (one timing of each, used for every
    figure); the fraction of torch is the median of the per-round ratios. Each row names the
    size of the thread pool the candidate ran on.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    error = (mm.matmul_numba_parallel(a, b) - a @ b).abs().max().item()
    timings = interleaved({"torch.matmul": lambda: torch.matmul(a, b),
                           "numba parallel blocked": lambda: mm.matmul_numba_parallel(a, b)},
                          rounds=rounds, warmup=1)
    rows = rows_for(timings, mm.matmul_flop(size, size, size), "torch.matmul")
    threads = {"torch.matmul": torch.get_num_threads(), "numba parallel blocked": numba.get_num_threads()}
    for row in rows:
        row["fraction_of_torch"] = row.pop("fraction_of_torch.matmul")
        row["fraction_of_torch_q1"] = row.pop("fraction_of_torch.matmul_q1")
        row["fraction_of_torch_q3"] = row.pop("fraction_of_torch.matmul_q3")
        row["threads"] = threads[row["name"]]
    rows[-1]["max_abs_error"] = error
    return rows


def gpu_benchmark(size: int, rounds: int) -> list[dict]:
    """Every numba CUDA kernel (`CUDA_RUNGS`) against cuBLAS (TF32 off) at size^3, float32, on the GPU.

    One row per contender, cuBLAS first: median and best seconds, GFLOP/s, the fraction of
    cuBLAS's GFLOP/s, and the max abs error against a float64 product of the same inputs.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    generator = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(size, size, device="cuda", generator=generator)
    b = torch.randn(size, size, device="cuda", generator=generator)
    expected = torch.matmul(a.double(), b.double())
    contenders = {"cuBLAS torch.matmul": lambda: torch.matmul(a, b),
                  **{name: (lambda f=mm.RUNGS[name]: f(a, b)) for name in mm.CUDA_RUNGS}}
    errors = {name: (run().double() - expected).abs().max().item() for name, run in contenders.items()}
    del expected
    times = interleaved(contenders, rounds=rounds, device="cuda")
    rows = rows_for(times, mm.matmul_flop(size, size, size), "cuBLAS torch.matmul")
    for row in rows:
        row["max_abs_error"] = errors[row["name"]]
    return rows


def run(quick: bool = False) -> dict:
    """CPU rows always; GPU rows where a CUDA GPU is usable by numba. Summary: the ratios."""
    size = 256 if quick else 1024
    threads = {"torch": torch.get_num_threads(), "numba": numba.get_num_threads(),
               "numba_threading_layer": None,
               **{name: os.environ.get(name, "unset") for name in THREAD_VARIABLES}}
    cpu_rows = cpu_benchmark(size, rounds=3 if quick else 9)
    threads["numba_threading_layer"] = numba.threading_layer()
    numba_row = cpu_rows[-1]
    summary = {"cpu_size": size,
               "cpu_numba_parallel_gflops": numba_row["gflops"],
               "cpu_torch_matmul_gflops": cpu_rows[0]["gflops"],
               "cpu_numba_parallel_fraction_of_torch": numba_row["fraction_of_torch"],
               "cpu_numba_parallel_fraction_of_torch_quartiles": [numba_row["fraction_of_torch_q1"],
                                                                  numba_row["fraction_of_torch_q3"]],
               "cpu_target_fraction": 0.20}
    result = {"threads": threads, "cpu": cpu_rows}
    status = mm.cuda_status() if torch.cuda.is_available() else "no CUDA GPU"
    if status == "gpu":
        gpu_size = 1024 if quick else 4096
        gpu_rows = gpu_benchmark(gpu_size, rounds=3 if quick else 10)
        by_name = {row["name"]: row for row in gpu_rows}
        tiled, register = by_name["numba CUDA tiled"], by_name["numba CUDA register-tiled"]
        result["gpu"] = gpu_rows
        summary |= {"gpu_size": gpu_size, "gpu_name": torch.cuda.get_device_name(),
                    "gpu_tiled_gflops": tiled["gflops"], "gpu_cublas_gflops": gpu_rows[0]["gflops"],
                    "gpu_tiled_fraction_of_cublas": tiled["fraction_of_cuBLAS_torch.matmul"],
                    "gpu_register_tiled_gflops": register["gflops"],
                    "gpu_register_tiled_fraction_of_cublas": register["fraction_of_cuBLAS_torch.matmul"],
                    "gpu_target_fraction": 0.15}
    else:
        summary["gpu"] = f"not run: {status}"
    result["summary"] = summary
    return result
