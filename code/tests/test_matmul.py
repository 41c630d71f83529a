"""Every rung of the matmul ladder against torch.matmul; the CUDA kernels in numba's simulator."""

from __future__ import annotations

import pytest
import torch

from fromscratch import matmul as mm

SHAPES = [(1, 7, 5), (6, 9, 1), (1, 1, 1), (5, 1, 3), (13, 17, 11), (33, 40, 35), (64, 32, 48)]
CPU_RUNGS = [name for name in mm.RUNGS if name not in mm.CUDA_RUNGS]


def operands(m: int, k: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=generator), torch.randn(k, n, generator=generator)


@pytest.mark.parametrize("name", CPU_RUNGS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cpu_rung_equals_torch_matmul(name: str, shape: tuple[int, int, int]) -> None:
    if name == "pure Python loops" and shape[0] * shape[1] * shape[2] > 20_000:
        pytest.skip("the pure-Python loop is tested on the smaller shapes")
    a, b = operands(*shape)
    c = mm.RUNGS[name](a, b)
    assert c.shape == (shape[0], shape[2]) and c.dtype == torch.float32
    torch.testing.assert_close(c, torch.matmul(a, b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("blocks", [(4, 1, 4), (8, 5, 12), (32, 512, 128), (64, 7, 8)])
def test_blocked_matmul_any_block_sizes_and_awkward_shapes(blocks: tuple[int, int, int]) -> None:
    mc, kc, nc = blocks
    a, b = operands(67, 130, 45, seed=1)
    c = mm.matmul_numba_parallel(a, b, mc=mc, kc=kc, nc=nc)
    torch.testing.assert_close(c, a @ b, rtol=1e-4, atol=1e-4)


def test_blocked_matmul_rejects_bad_blocks() -> None:
    a, b = operands(4, 4, 4)
    with pytest.raises(ValueError, match="multiples of 4"):
        mm.matmul_numba_parallel(a, b, mc=6)


def test_bad_operands_raise_clear_errors() -> None:
    a, b = operands(3, 4, 5)
    with pytest.raises(ValueError, match="inner dimensions"):
        mm.matmul_numba(a, a)
    with pytest.raises(ValueError, match="2-D"):
        mm.matmul_python(a[0], b)
    with pytest.raises(TypeError, match="torch tensors"):
        mm.matmul_broadcast(a.numpy(), b)


def test_flop_count() -> None:
    assert mm.matmul_flop(2, 3, 4) == 48


def test_cuda_kernels_in_simulator() -> None:
    """Runs in a child process with NUMBA_ENABLE_CUDASIM=1, so it works inside any pytest run."""
    shapes = [(1, 5, 7), (9, 3, 1), (33, 40, 35), (32, 64, 32), (40, 33, 70)]
    rows = mm.simulator_errors(shapes, seed=3)
    assert len(rows) == len(mm.CUDA_RUNGS) * len(shapes)
    assert {row["kernel"] for row in rows} == set(mm.CUDA_RUNGS)
    assert all(row["simulated"] for row in rows)
    for row in rows:
        assert row["max_abs_error"] < 1e-4 * max(1, row["k"]), row


def test_register_tiled_kernel_across_block_and_step_edges() -> None:
    """Two blocks down the rows, a last step of width 1 (the shapes above cover the columns)."""
    name = "numba CUDA register-tiled"
    shapes = [(mm.BLOCK_M + 2, mm.BLOCK_K + 1, 5)]
    rows = mm.simulator_errors(shapes, seed=5, kernels=[name])
    assert [(row["kernel"], row["m"], row["k"], row["n"]) for row in rows] == [(name, *s) for s in shapes]
    for row in rows:
        assert row["simulated"] and row["max_abs_error"] < 1e-4 * max(1, row["k"]), row


def test_simulator_errors_rejects_unknown_kernels() -> None:
    with pytest.raises(ValueError, match="not CUDA kernels"):
        mm.simulator_errors([(2, 2, 2)], kernels=["numba @njit"])


@pytest.mark.skipif(not torch.cuda.is_available() or mm.cuda_status() != "gpu", reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", mm.CUDA_RUNGS)
def test_cuda_kernels_on_gpu(name: str) -> None:
    a, b = (t.cuda() for t in operands(100, 70, 130))
    torch.testing.assert_close(mm.RUNGS[name](a, b), a @ b, rtol=1e-4, atol=1e-4)


def test_benchmark_reports_ratio_measured_in_the_same_run() -> None:
    from fromscratch.benchmarks import matmul as bench_matmul

    result = bench_matmul.run(quick=True)
    summary = result["summary"]
    assert summary["cpu_size"] == 256
    assert summary["cpu_numba_parallel_fraction_of_torch"] > 0
    assert summary["cpu_numba_parallel_gflops"] > 0 and summary["cpu_torch_matmul_gflops"] > 0
    assert result["cpu"][-1]["max_abs_error"] < 1e-2
    assert "gpu_tiled_fraction_of_cublas" in summary or summary["gpu"].startswith("not run")
