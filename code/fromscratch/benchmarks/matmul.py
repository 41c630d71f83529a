"""Benchmark of the matmul ladder's fast rungs: numba parallel blocked vs torch.matmul, numba CUDA vs cuBLAS.

CPU: 1024 x 1024 float32, the numba `prange` blocked kernel against `torch.matmul` (MKL/oneDNN),
timed in alternation in the same run so that a shared machine's load hits both alike.
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
from fromscratch.bench import gflops, interleaved_times

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def rows_for(times: dict[str, list[float]], flop: int, reference: str) -> list[dict]:
    """One row per candidate: median seconds, GFLOP/s, and GFLOP/s as a fraction of the reference."""
    reference_rate = gflops(flop, statistics.median(times[reference]))
    rows = []
    for name, seconds in times.items():
        rate = gflops(flop, statistics.median(seconds))
        rows.append({"name": name, "median_s": statistics.median(seconds), "best_s": min(seconds),
                     "gflops": rate, "fraction_of_" + reference.replace(" ", "_"): rate / reference_rate})
    return rows


def cpu_benchmark(size: int, rounds: int) -> list[dict]:
    """numba parallel blocked against torch.matmul at size x size, float32.

    torch is timed alone first, then in alternation with numba (whose idle worker threads may
    spin for a while); the fraction is taken against the faster of the two torch timings.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    alone = interleaved_times({"torch.matmul alone": lambda: torch.matmul(a, b)}, rounds=rounds)
    error = (mm.matmul_numba_parallel(a, b) - a @ b).abs().max().item()
    times = interleaved_times({"torch.matmul": lambda: torch.matmul(a, b),
                               "numba parallel blocked": lambda: mm.matmul_numba_parallel(a, b)},
                              rounds=rounds)
    times = {**alone, **times}  # torch timed before numba's threads existed, and in alternation
    fastest_torch = min(("torch.matmul alone", "torch.matmul"), key=lambda n: statistics.median(times[n]))
    rows = rows_for(times, mm.matmul_flop(size, size, size), fastest_torch)
    for row in rows:
        row["fraction_of_torch"] = row.pop("fraction_of_" + fastest_torch.replace(" ", "_"))
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
    times = interleaved_times(contenders, rounds=rounds, device="cuda")
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
               "cpu_torch_matmul_gflops": numba_row["gflops"] / numba_row["fraction_of_torch"],
               "cpu_numba_parallel_fraction_of_torch": numba_row["fraction_of_torch"],
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
