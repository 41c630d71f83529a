"""Differential property tests of the CPU rungs of fromscratch.matmul against torch.matmul.

Property: the same value (and, for the rungs built from torch operations, the same gradient) as
torch.matmul within property_helpers.TOLERANCE, the absolute tolerance scaled by k * max|a| * max|b|,
or both raise. Deliberate differences, stated in the module's docstrings and encoded here:
* the rungs take 2-D matrices only (torch.matmul also takes vectors and batches): a one-line refusal;
* the numba rungs compute in float32 and return float32 whatever the input dtype; the blocked one is
  compiled with fastmath, so with ±inf or nan among the inputs its result is not specified;
* the pure-Python and numba rungs cannot carry a gradient: they refuse inputs that require one;
* shapes stay tiny (sides 0-5): the pure-Python rung runs one interpreter step per multiply-add;
* where a sum of products overflows the precision it accumulates in, inf or nan depends on the order
  of the additions and on that precision (the pure-Python rung adds Python floats, float64; torch adds
  half-precision products in float32): those elements are not compared.
The CUDA rungs are not generated here: numba's simulator runs each thread as a Python thread
(test_matmul.py checks them on fixed shapes, and on a GPU when there is one).
"""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st
from property_helpers import assert_close, dtypes, gradients, same_outcome, tensors

from fromscratch import matmul

CPU_RUNGS = {name: fn for name, fn in matmul.RUNGS.items() if name not in matmul.CUDA_RUNGS}
NUMBA_RUNGS = ("numba @njit", "numba parallel blocked")
NO_GRADIENT = ("pure Python loops", *NUMBA_RUNGS)
NOT_2D = "expected 2-D matrices"


@st.composite
def operands(draw, magnitudes: str = "any"):
    """a (m, k) and b (k', n); now and then k' != k, a dtype that differs, or not 2-D at all."""
    m, k, n = (draw(st.integers(0, 5)) for _ in range(3))
    k_b = k if draw(st.integers(0, 14)) else k + 1
    dtype_a = draw(dtypes)
    dtype_b = dtype_a if draw(st.integers(0, 14)) else draw(dtypes)
    shape_a = (m, k) if draw(st.integers(0, 14)) else draw(st.sampled_from([(k,), (2, m, k)]))
    return draw(tensors(shape_a, dtype_a, magnitudes)), draw(tensors((k_b, n), dtype_b, magnitudes))


def scale(a: torch.Tensor, b: torch.Tensor) -> float:
    def largest(t):
        finite_t = t[torch.isfinite(t)].double()
        return 1.0 + (float(finite_t.abs().max()) if finite_t.numel() else 0.0)
    return max(a.shape[-1], 1) * largest(a) * largest(b)


def torch_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(NOT_2D)
    return torch.matmul(a, b)


@given(operands(), st.sampled_from(sorted(CPU_RUNGS)))
def test_cpu_rungs_equal_torch_matmul(case, name) -> None:
    a, b = case
    both = same_outcome(lambda: CPU_RUNGS[name](a, b), lambda: torch_matmul(a, b))
    if not both:
        return
    ours, theirs = both
    if name in NUMBA_RUNGS:  # float32 by design: compare with torch in float32, rounded from the input
        assert ours.dtype == torch.float32
        theirs = torch.matmul(a.float(), b.float())
        if name == "numba parallel blocked" and not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            return  # fastmath: non-finite inputs give an unspecified result
        ours, theirs = compare_where_no_overflow(ours, theirs, a, b, torch.float32)
        assert_close(ours, theirs, torch.float32 if a.dtype == torch.float64 else a.dtype, scale=scale(a, b))
        return
    accumulate = torch.float64 if a.dtype == torch.float64 else torch.float32
    ours, theirs = compare_where_no_overflow(ours, theirs, a, b, accumulate)
    assert_close(ours, theirs, scale=scale(a, b))


def compare_where_no_overflow(ours: torch.Tensor, theirs: torch.Tensor, a: torch.Tensor,
                              b: torch.Tensor, accumulate: torch.dtype
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Both results with the elements where sum_k |a_ik| |b_kj| overflows `accumulate` set to nan
    (not compared: the order of the additions decides inf or nan there)."""
    with torch.no_grad():
        bound = a.detach().abs().double() @ b.detach().abs().double()
        overflow = ~(bound <= torch.finfo(accumulate).max)  # inf and nan bounds count too
        ours, theirs = ours.clone(), theirs.clone()
        ours[overflow] = theirs[overflow] = float("nan")
    return ours, theirs


@given(operands("normal"), st.sampled_from(sorted(CPU_RUNGS)))
def test_gradients_or_a_clear_refusal(case, name) -> None:
    a, b = case
    if a.dim() != 2 or a.dtype != b.dtype or a.shape[1] != b.shape[0]:
        return
    if name in NO_GRADIENT:
        leaf = a.clone().requires_grad_()
        both = same_outcome(lambda: CPU_RUNGS[name](leaf, b), lambda: torch_matmul(leaf, b),
                            refusal="cannot carry a gradient")
        assert both is None, "a rung without autograd must refuse an input that requires a gradient"
        with torch.no_grad():  # and work without one
            CPU_RUNGS[name](leaf, b)
        return
    for ours, theirs in zip(gradients(CPU_RUNGS[name], a, b), gradients(torch.matmul, a, b), strict=True):
        assert_close(ours, theirs, scale=scale(a, b) * 3)


@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), st.sampled_from([4, 8, 12]),
       st.integers(1, 7), st.sampled_from([4, 8]))
def test_blocked_rung_for_any_block_sizes(m, k, n, mc, kc, nc) -> None:
    generator = torch.Generator().manual_seed(m * 100 + k * 10 + n)
    a, b = torch.randn(m, k, generator=generator), torch.randn(k, n, generator=generator)
    assert_close(matmul.matmul_numba_parallel(a, b, mc=mc, kc=kc, nc=nc), a @ b, scale=scale(a, b))


@given(st.integers(0, 10**4), st.integers(0, 10**4), st.integers(0, 10**4))
def test_flop_count(m, k, n) -> None:
    assert matmul.matmul_flop(m, k, n) == 2 * m * k * n
