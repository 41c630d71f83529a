"""Matrix multiplication as a ladder: pure Python loops up to numba CPU and CUDA kernels, one signature.

Every rung is a function `(a, b) -> c` taking two 2-D tensors (m, k) and (k, n) and returning
their (m, n) product as a tensor, so a post can time them side by side and check each against
`torch.matmul`. The numba rungs compute in float32 and return float32; they and the pure-Python rung
leave torch, so they refuse operands that require a gradient. Unlike torch.matmul, every rung takes
2-D matrices only, of one dtype.

The CUDA kernels are compiled by `numba.cuda`. Without a GPU they run in numba's CUDA simulator,
which must be switched on *before* `numba.cuda` is first imported:
`os.environ["NUMBA_ENABLE_CUDASIM"] = "1"`. The simulator checks correctness; it is far too slow
to time anything.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

import numpy as np
import torch
from numba import cuda, float32, njit, prange, uint32

TILE = 32  # side of the square tiles that the tiled CUDA kernel stages in shared memory
ROWS_PER_THREAD = 4  # outputs each thread of the tiled kernel computes (one column, 4 rows)
THREAD_ROWS = TILE // ROWS_PER_THREAD  # the tiled kernel's blocks are TILE x THREAD_ROWS threads
NAIVE_BLOCK = (16, 16)  # threads per block of the one-thread-per-output kernel
BLOCK_M = 128  # rows of c that one block of the register-tiled kernel computes
BLOCK_N = 128  # columns of c that one block of the register-tiled kernel computes
BLOCK_K = 8  # width of the slice of the inner dimension staged in shared memory per step
FRAG_M = 8  # rows of the fragment of c that each thread of that kernel keeps in registers
FRAG_N = 8  # columns of that fragment: 64 running sums per thread
FRAG_THREADS_M = BLOCK_M // FRAG_M  # 16 threads share the block's rows ...
FRAG_THREADS_N = BLOCK_N // FRAG_N  # ... and 16 its columns: 256 threads per block
REGISTER_THREADS = FRAG_THREADS_M * FRAG_THREADS_N
A_TILE_WIDTH = BLOCK_M + 32 // BLOCK_K  # row length of the transposed A tile in shared memory:
# the padding puts a warp's 32 transposing stores into the 32 different banks
A_LOADS = BLOCK_M * BLOCK_K // REGISTER_THREADS  # values of a each thread copies per step (4)
B_LOADS = BLOCK_K * BLOCK_N // REGISTER_THREADS  # values of b each thread copies per step (4)
A_ROW_STEP = REGISTER_THREADS // BLOCK_K  # rows between a thread's loads of a (32)
B_ROW_STEP = REGISTER_THREADS // BLOCK_N  # rows between a thread's loads of b (2)
MICRO = 4  # the CPU micro-kernel computes MICRO x MICRO outputs in registers


def check_operands(a: torch.Tensor, b: torch.Tensor) -> None:
    """Raise a one-line error unless `a @ b` is a product of two 2-D tensors."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"expected two torch tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"expected 2-D matrices, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"inner dimensions differ: {tuple(a.shape)} @ {tuple(b.shape)}; "
                         "a's columns must equal b's rows")
    if a.dtype != b.dtype:
        raise TypeError(f"a and b must have one dtype, got {a.dtype} and {b.dtype} (as torch.matmul); "
                        "convert one with .to()")


def check_no_gradient(a: torch.Tensor, b: torch.Tensor, rung: str) -> None:
    """Refuse operands that require a gradient: this rung leaves torch, so autograd cannot follow it."""
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        raise ValueError(f"{rung} cannot carry a gradient (it computes outside torch); pass detached "
                         "operands or call it under torch.no_grad()")


def matmul_flop(m: int, k: int, n: int) -> int:
    """Floating-point operations of an (m, k) @ (k, n) product: one multiply and one add each."""
    return 2 * m * k * n


# --- Rungs 1-5: Python loops, then torch doing more and more of the work -------------------------

def matmul_python(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Three nested Python loops over Python floats: every multiply-add runs in the interpreter.

    No gradient: the numbers leave torch (a.tolist()), so operands that require one are refused.
    """
    check_operands(a, b)
    check_no_gradient(a, b, "matmul_python")
    rows, inner, cols = a.shape[0], a.shape[1], b.shape[1]
    al, bl = a.tolist(), b.tolist()
    c = [[0.0] * cols for _ in range(rows)]
    for i in range(rows):
        for j in range(cols):
            for k in range(inner):
                c[i][j] += al[i][k] * bl[k][j]
    return torch.tensor(c, dtype=a.dtype).reshape(rows, cols)


def matmul_rowcol(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Two Python loops; the innermost becomes an elementwise product of a row and a column."""
    check_operands(a, b)
    if not a.shape[0] * b.shape[1]:
        return torch.matmul(a, b)  # an empty product: nothing to loop over (keeps the autograd link)
    c = torch.zeros(a.shape[0], b.shape[1], dtype=a.dtype, device=a.device)
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            c[i, j] = (a[i, :] * b[:, j]).sum()
    return c


def matmul_broadcast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One Python loop over rows: row (k, 1) broadcast against b (k, n), summed over k."""
    check_operands(a, b)
    if not a.shape[0] * b.shape[1]:
        return torch.matmul(a, b)  # an empty product: nothing to loop over (keeps the autograd link)
    c = torch.zeros(a.shape[0], b.shape[1], dtype=a.dtype, device=a.device)
    for i in range(a.shape[0]):
        c[i] = (a[i, :, None] * b).sum(dim=0)
    return c


def matmul_einsum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """No Python loop: `torch.einsum('ik,kj->ij')` names the indices and sums the repeated one."""
    check_operands(a, b)
    return torch.einsum("ik,kj->ij", a, b)


def matmul_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The reference: `torch.matmul` (MKL/oneDNN on a CPU, cuBLAS on a GPU)."""
    check_operands(a, b)
    return torch.matmul(a, b)


# --- Rungs 6-7: numba on the CPU --------------------------------------------------------------

def _as_float32_numpy(t: torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 NumPy view (or copy) of a tensor, on the CPU."""
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


@njit(cache=True)
def _matmul_loops_compiled(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """The same three loops as `matmul_python`, compiled to machine code by numba."""
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            acc = np.float32(0.0)
            for k in range(a.shape[1]):
                acc += a[i, k] * b[k, j]
            c[i, j] = acc


def matmul_numba(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Numba `@njit`: the triple loop compiled, one core, no blocking. float32 in and out, no gradient."""
    check_operands(a, b)
    check_no_gradient(a, b, "matmul_numba")
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
    _matmul_loops_compiled(_as_float32_numpy(a), _as_float32_numpy(b), c)
    return torch.from_numpy(c)


@njit(parallel=True, fastmath=True, cache=True)
def _matmul_blocked_kernel(a: np.ndarray, bt: np.ndarray, c: np.ndarray, mc: int, kc: int,
                           nc: int) -> None:
    """c += a @ bt.T on padded operands whose rows are multiples of MICRO (= 4).

    Loops, outermost first: row panels of `mc` rows (one per thread, `prange`); slices of `kc`
    along the inner dimension (so the rows being read stay in cache); panels of `nc` columns;
    then a 4x4 micro-kernel whose 16 running sums live in registers. The micro-kernel reads
    4 rows of `a` and 4 rows of `bt` (b transposed, so both are read contiguously) and does
    16 multiply-adds per 8 loads. Its loop index is unsigned: numba then skips the check for
    negative indices, and LLVM turns the loop into vector (SIMD) loads and fused multiply-adds.
    """
    m, k = a.shape
    n = bt.shape[0]
    for panel in prange((m + mc - 1) // mc):
        i0 = panel * mc
        i1 = min(i0 + mc, m)
        for k0 in range(0, k, kc):
            k1 = min(k0 + kc, k)
            for j0 in range(0, n, nc):
                j1 = min(j0 + nc, n)
                for i in range(i0, i1, 4):
                    for j in range(j0, j1, 4):
                        s00 = s01 = s02 = s03 = np.float32(0.0)
                        s10 = s11 = s12 = s13 = np.float32(0.0)
                        s20 = s21 = s22 = s23 = np.float32(0.0)
                        s30 = s31 = s32 = s33 = np.float32(0.0)
                        for p in range(np.uint64(k0), np.uint64(k1)):
                            a0, a1, a2, a3 = a[i, p], a[i + 1, p], a[i + 2, p], a[i + 3, p]
                            b0, b1, b2, b3 = bt[j, p], bt[j + 1, p], bt[j + 2, p], bt[j + 3, p]
                            s00 += a0 * b0
                            s01 += a0 * b1
                            s02 += a0 * b2
                            s03 += a0 * b3
                            s10 += a1 * b0
                            s11 += a1 * b1
                            s12 += a1 * b2
                            s13 += a1 * b3
                            s20 += a2 * b0
                            s21 += a2 * b1
                            s22 += a2 * b2
                            s23 += a2 * b3
                            s30 += a3 * b0
                            s31 += a3 * b1
                            s32 += a3 * b2
                            s33 += a3 * b3
                        c[i, j] += s00
                        c[i, j + 1] += s01
                        c[i, j + 2] += s02
                        c[i, j + 3] += s03
                        c[i + 1, j] += s10
                        c[i + 1, j + 1] += s11
                        c[i + 1, j + 2] += s12
                        c[i + 1, j + 3] += s13
                        c[i + 2, j] += s20
                        c[i + 2, j + 1] += s21
                        c[i + 2, j + 2] += s22
                        c[i + 2, j + 3] += s23
                        c[i + 3, j] += s30
                        c[i + 3, j + 1] += s31
                        c[i + 3, j + 2] += s32
                        c[i + 3, j + 3] += s33


def _pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
    """`x` with zero rows appended until its row count is a multiple of `multiple`."""
    extra = -x.shape[0] % multiple
    if extra == 0:
        return x
    return np.concatenate([x, np.zeros((extra, x.shape[1]), dtype=x.dtype)])


def matmul_numba_parallel(a: torch.Tensor, b: torch.Tensor, *, mc: int = 64, kc: int = 1024,
                          nc: int = 128) -> torch.Tensor:
    """Numba `prange` over row panels, cache blocking (mc, kc, nc) and a 4x4 register micro-kernel.

    `b` is transposed once (O(n^2) work against the product's O(n^3)) so that the micro-kernel
    reads both operands along contiguous rows; the rows of both are padded with zeros to a
    multiple of 4 and the padding is cut off the result. float32 in and out, no gradient; compiled
    with fastmath, so the result is unspecified when an operand holds ±inf or nan.
    """
    check_operands(a, b)
    check_no_gradient(a, b, "matmul_numba_parallel")
    if min(mc, kc, nc) < 1 or mc % MICRO or nc % MICRO:
        raise ValueError(f"block sizes must be positive and mc, nc multiples of {MICRO}; "
                         f"got {mc=} {kc=} {nc=}")
    m, n = a.shape[0], b.shape[1]
    a_padded = _pad_rows(_as_float32_numpy(a), MICRO)
    bt_padded = _pad_rows(np.ascontiguousarray(_as_float32_numpy(b).T), MICRO)
    c = np.zeros((a_padded.shape[0], bt_padded.shape[0]), dtype=np.float32)
    _matmul_blocked_kernel(a_padded, bt_padded, c, mc, kc, nc)
    return torch.from_numpy(np.ascontiguousarray(c[:m, :n]))


# --- Rungs 8-10: numba CUDA kernels ----------------------------------------------------------

def simulated() -> bool:
    """True when numba.cuda is the CPU simulator (NUMBA_ENABLE_CUDASIM=1 before it was imported)."""
    from numba.core import config

    return bool(config.ENABLE_CUDASIM)


@cuda.jit
def _matmul_naive_kernel(a, b, c):
    """One thread per output element c[row, col]: a dot product of length k, summed in float32."""
    col, row = cuda.grid(2)  # x varies fastest across a warp: neighbouring threads, neighbouring columns
    if row < c.shape[0] and col < c.shape[1]:
        acc = float32(0.0)
        for p in range(a.shape[1]):
            acc += a[row, p] * b[p, col]
        c[row, col] = acc


@cuda.jit
def _matmul_tiled_kernel(a, b, c):
    """Shared-memory tiling: a block computes a TILE x TILE patch of c from TILE-wide tiles.

    The block has TILE x THREAD_ROWS threads. For each of the ceil(k / TILE) tiles along the
    inner dimension, the threads copy one TILE x TILE tile of `a` and one of `b` from global
    into shared memory (zeros where the tile hangs over the matrix edge), wait, and multiply
    the tiles out of shared memory. Each thread owns ROWS_PER_THREAD outputs of one column, so
    every value of `b` it reads from shared memory serves ROWS_PER_THREAD multiply-adds.
    """
    a_tile = cuda.shared.array(shape=(TILE, TILE), dtype=float32)
    b_tile = cuda.shared.array(shape=(TILE, TILE), dtype=float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row0 = cuda.blockIdx.y * TILE
    col = cuda.blockIdx.x * TILE + tx
    m, k = a.shape
    n = b.shape[1]
    acc = cuda.local.array(ROWS_PER_THREAD, float32)
    for r in range(ROWS_PER_THREAD):
        acc[r] = float32(0.0)
    for t in range((k + TILE - 1) // TILE):
        for r in range(ROWS_PER_THREAD):
            tile_row = ty + r * THREAD_ROWS
            a_row, a_col = row0 + tile_row, t * TILE + tx
            a_tile[tile_row, tx] = a[a_row, a_col] if a_row < m and a_col < k else float32(0.0)
            b_row = t * TILE + tile_row
            b_tile[tile_row, tx] = b[b_row, col] if b_row < k and col < n else float32(0.0)
        cuda.syncthreads()
        for p in range(TILE):
            b_value = b_tile[p, tx]
            for r in range(ROWS_PER_THREAD):
                acc[r] += a_tile[ty + r * THREAD_ROWS, p] * b_value
        cuda.syncthreads()
    for r in range(ROWS_PER_THREAD):
        row = row0 + ty + r * THREAD_ROWS
        if row < m and col < n:
            c[row, col] = acc[r]


@cuda.jit(device=True)
def _load_register_tiles(a, b, a_staged, b_staged, row0, col0, k0, tid):
    """Read this thread's share of a tile of `a` and a tile of `b` from global memory into registers.

    Zeros where the tiles hang over the matrix edges. All the loads are issued before anything
    is stored, so they are in flight together. A warp reads 32 // BLOCK_K rows x BLOCK_K values of
    `a` (4 x 8) and 32 neighbouring values of one row of `b`.
    """
    m, k = a.shape
    n = b.shape[1]
    a_row, a_col = row0 + tid // BLOCK_K, k0 + tid % BLOCK_K
    for s in range(A_LOADS):
        row = a_row + s * A_ROW_STEP
        a_staged[s] = a[row, a_col] if row < m and a_col < k else float32(0.0)
    b_row, b_col = k0 + tid // BLOCK_N, col0 + tid % BLOCK_N
    for s in range(B_LOADS):
        row = b_row + s * B_ROW_STEP
        b_staged[s] = b[row, b_col] if row < k and b_col < n else float32(0.0)


@cuda.jit
def _matmul_register_kernel(a, b, c):
    """Register tiling: each thread keeps a FRAG_M x FRAG_N fragment of c in registers.

    A block of REGISTER_THREADS threads computes a BLOCK_M x BLOCK_N patch of c, in steps of
    BLOCK_K along the inner dimension. Each step copies a BLOCK_M x BLOCK_K tile of `a`, stored
    transposed (column p of the tile is row p of `a_tile`), and a BLOCK_K x BLOCK_N tile of `b`
    into shared memory. Then, for each p, a thread reads FRAG_M values of A's column p and
    FRAG_N values of B's row p into registers and adds their outer product to its running
    sums: FRAG_M + FRAG_N shared-memory reads feed FRAG_M * FRAG_N multiply-adds.

    A thread owns rows `ty + i * FRAG_THREADS_M` and columns `tx + j * FRAG_THREADS_N`: strided,
    so that neighbouring threads read neighbouring words of shared memory (different banks)
    and write neighbouring columns of c. The global loads of the next step are issued before
    the current step's multiply-adds, so their latency hides behind arithmetic. The fragment
    loops have module constants as bounds: the compiler unrolls them and keeps the local arrays
    in registers. Unsigned `tid` and `p` spare it the checks for negative indices.
    """
    a_tile = cuda.shared.array(shape=(BLOCK_K, A_TILE_WIDTH), dtype=float32)
    b_tile = cuda.shared.array(shape=(BLOCK_K, BLOCK_N), dtype=float32)
    a_staged = cuda.local.array(A_LOADS, float32)
    b_staged = cuda.local.array(B_LOADS, float32)
    a_frag = cuda.local.array(FRAG_M, float32)
    b_frag = cuda.local.array(FRAG_N, float32)
    acc = cuda.local.array((FRAG_M, FRAG_N), float32)
    tid = uint32(cuda.threadIdx.x)  # unsigned: the compiler then knows no index is negative
    ty, tx = tid // FRAG_THREADS_N, tid % FRAG_THREADS_N  # a warp: 2 rows of 16 threads
    a_r, a_p = tid // BLOCK_K, tid % BLOCK_K  # where this thread's staged values of a go
    b_p, b_j = tid // BLOCK_N, tid % BLOCK_N  # and those of b
    row0, col0 = cuda.blockIdx.y * BLOCK_M, cuda.blockIdx.x * BLOCK_N
    for i in range(FRAG_M):
        for j in range(FRAG_N):
            acc[i, j] = float32(0.0)
    _load_register_tiles(a, b, a_staged, b_staged, row0, col0, 0, tid)
    for k0 in range(0, a.shape[1], BLOCK_K):
        for s in range(A_LOADS):
            a_tile[a_p, a_r + s * A_ROW_STEP] = a_staged[s]  # transposed
        for s in range(B_LOADS):
            b_tile[b_p + s * B_ROW_STEP, b_j] = b_staged[s]
        cuda.syncthreads()
        _load_register_tiles(a, b, a_staged, b_staged, row0, col0, k0 + BLOCK_K, tid)  # next step
        for p in range(uint32(BLOCK_K)):  # unsigned too
            for i in range(FRAG_M):
                a_frag[i] = a_tile[p, ty + i * FRAG_THREADS_M]
            for j in range(FRAG_N):
                b_frag[j] = b_tile[p, tx + j * FRAG_THREADS_N]
            for i in range(FRAG_M):
                for j in range(FRAG_N):
                    acc[i, j] += a_frag[i] * b_frag[j]
        cuda.syncthreads()
    for i in range(FRAG_M):
        row = row0 + ty + i * FRAG_THREADS_M
        for j in range(FRAG_N):
            col = col0 + tx + j * FRAG_THREADS_N
            if row < c.shape[0] and col < c.shape[1]:
                c[row, col] = acc[i, j]


def _launch(kernel: Callable, a: torch.Tensor, b: torch.Tensor, blocks: tuple[int, int],
            threads: tuple[int, int]) -> torch.Tensor:
    """Run `kernel[blocks, threads](a, b, c)` and return c as a tensor on a's device.

    CUDA tensors are handed to numba without a copy (`cuda.as_cuda_array`); CPU tensors are
    copied to the device with `cuda.to_device` and the result copied back.
    """
    check_no_gradient(a, b, "the numba CUDA kernels")
    m, n = a.shape[0], b.shape[1]
    if a.is_cuda and not simulated():
        a32, b32 = a.detach().float().contiguous(), b.detach().float().contiguous()
        c = torch.empty(m, n, dtype=torch.float32, device=a.device)
        kernel[blocks, threads](cuda.as_cuda_array(a32), cuda.as_cuda_array(b32), cuda.as_cuda_array(c))
        return c
    a_dev, b_dev = cuda.to_device(_as_float32_numpy(a)), cuda.to_device(_as_float32_numpy(b))
    c_dev = cuda.device_array((m, n), dtype=np.float32)
    kernel[blocks, threads](a_dev, b_dev, c_dev)
    return torch.from_numpy(c_dev.copy_to_host())


def matmul_cuda_naive(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Numba CUDA, one thread per output: a grid of 16x16-thread blocks covering c."""
    check_operands(a, b)
    m, n = a.shape[0], b.shape[1]
    threads = NAIVE_BLOCK
    blocks = (math.ceil(n / threads[0]), math.ceil(m / threads[1]))  # (x: columns, y: rows)
    return _launch(_matmul_naive_kernel, a, b, blocks, threads)


def matmul_cuda_tiled(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Numba CUDA, shared-memory tiles of TILE x TILE, ROWS_PER_THREAD outputs per thread."""
    check_operands(a, b)
    m, n = a.shape[0], b.shape[1]
    blocks = (math.ceil(n / TILE), math.ceil(m / TILE))
    return _launch(_matmul_tiled_kernel, a, b, blocks, (TILE, THREAD_ROWS))


def matmul_cuda_register(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Numba CUDA, BLOCK_M x BLOCK_N patches per block, a FRAG_M x FRAG_N register tile per thread."""
    check_operands(a, b)
    m, n = a.shape[0], b.shape[1]
    blocks = (math.ceil(n / BLOCK_N), math.ceil(m / BLOCK_M))
    return _launch(_matmul_register_kernel, a, b, blocks, (REGISTER_THREADS, 1))


def cuda_status() -> str:
    """'gpu', 'simulator', or why neither works here (a one-line reason)."""
    if simulated():
        return "simulator"
    try:
        if not cuda.is_available():
            return "no CUDA GPU visible to numba"
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()  # the compiler library: a GPU driver alone is not enough to build kernels
    except Exception as error:  # the driver or libNVVM can be missing in many ways
        return f"numba.cuda unusable: {str(error).splitlines()[0]}"
    return "gpu"


RUNGS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "pure Python loops": matmul_python,
    "row x column products": matmul_rowcol,
    "broadcasting": matmul_broadcast,
    "torch.einsum": matmul_einsum,
    "torch.matmul": matmul_torch,
    "numba @njit": matmul_numba,
    "numba parallel blocked": matmul_numba_parallel,
    "numba CUDA naive": matmul_cuda_naive,
    "numba CUDA tiled": matmul_cuda_tiled,
    "numba CUDA register-tiled": matmul_cuda_register,
}
CUDA_RUNGS = ("numba CUDA naive", "numba CUDA tiled", "numba CUDA register-tiled")


def simulator_errors(shapes: list[tuple[int, int, int]], seed: int = 0,
                     kernels: Sequence[str] = CUDA_RUNGS) -> list[dict]:
    """Max abs error of each CUDA kernel against `torch.matmul`, run in numba's CUDA simulator.

    The simulator must be chosen before `numba.cuda` is imported, so the check runs in a fresh
    Python process with NUMBA_ENABLE_CUDASIM=1; this process is left as it is. One row per
    (kernel, m, k, n); `kernels` names rungs of CUDA_RUNGS. The simulator runs every CUDA thread
    as a Python thread: keep shapes small.
    """
    unknown = [name for name in kernels if name not in CUDA_RUNGS]
    if unknown:
        raise ValueError(f"not CUDA kernels: {unknown}; choose from {list(CUDA_RUNGS)}")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    code = ("import json, sys; from fromscratch.matmul import _errors_in_this_process as f; "
            "print(json.dumps(f(json.loads(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]))))")
    args = [json.dumps(shapes), str(seed), json.dumps(list(kernels))]
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the simulated CUDA check failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _errors_in_this_process(shapes: list[tuple[int, int, int]], seed: int,
                            kernels: Sequence[str] = CUDA_RUNGS) -> list[dict]:
    """The named CUDA kernels on random float32 inputs of each shape, against torch.matmul."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for m, k, n in shapes:
        a = torch.randn(m, k, generator=generator)
        b = torch.randn(k, n, generator=generator)
        expected = torch.matmul(a.double(), b.double())
        for name in kernels:
            c = RUNGS[name](a, b)
            rows.append({"kernel": name, "m": m, "k": k, "n": n, "simulated": simulated(),
                         "max_abs_error": float((c.double() - expected).abs().max())})
    return rows
