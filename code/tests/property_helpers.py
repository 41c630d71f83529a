"""Shared pieces of the differential property tests: generated tensors, tolerances, 'same outcome'.

The property every test checks: our function and torch's give the same value (and gradient) within
the dtype's tolerance below, or both raise. Budgets scale with the Hypothesis profile (conftest.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import torch
from hypothesis import settings
from hypothesis import strategies as st

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# rtol, atol per dtype: a few units in the last place of each format, looser for the half types
TOLERANCE = {torch.float16: (1e-2, 1e-2), torch.bfloat16: (5e-2, 5e-2),
             torch.float32: (1e-4, 1e-5), torch.float64: (1e-9, 1e-12)}
SPECIAL = (0.0, -0.0, 1e-30, -1e-30, 1e-300, 1e30, -1e30, 1e300, 65504.0, math.inf, -math.inf, math.nan)

dtypes = st.sampled_from(FLOAT_DTYPES)


def budget(fraction: float) -> int:
    """A share of the profile's max_examples, for tests whose single example is slow."""
    return max(2, int(settings().max_examples * fraction))


def values(magnitudes: str) -> st.SearchStrategy[float]:
    """'normal': |v| <= 10; 'wide': also tiny and huge finite values; 'any': also ±0, ±inf and nan."""
    normal = st.floats(-10, 10, allow_nan=False, allow_infinity=False)
    if magnitudes == "normal":
        return normal
    wide = st.one_of(normal, st.sampled_from(SPECIAL[:8]),
                     st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
    if magnitudes == "wide":
        return wide
    return st.one_of(wide, st.sampled_from(SPECIAL))


@st.composite
def tensors(draw: Callable, shape: tuple[int, ...], dtype: torch.dtype, magnitudes: str = "any"
            ) -> torch.Tensor:
    """A tensor of `shape` and `dtype` whose entries come from values(magnitudes), rounded to dtype."""
    data = draw(st.lists(values(magnitudes), min_size=math.prod(shape), max_size=math.prod(shape)))
    t = torch.tensor(data, dtype=torch.float64).reshape(shape)
    if magnitudes != "any":  # finite in the target dtype too: 1e30 would round to inf in float16
        biggest = torch.finfo(dtype).max
        t = t.clamp(-biggest, biggest)
    return t.to(dtype)


def shapes(min_dims: int = 1, max_dims: int = 3, min_side: int = 0, max_side: int = 4
           ) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """(True, result) or (False, the exception)."""
    try:
        return True, fn(*args, **kwargs)
    except Exception as error:  # the property compares whether both raise, not how
        return False, error


def same_outcome(ours: Callable[[], Any], theirs: Callable[[], Any], refusal: str | None = None
                 ) -> tuple[Any, Any] | None:
    """Both results, or None when both raised; fails when only one of them raised.

    `refusal` (a regex) names a deliberate refusal: ours may raise ValueError/TypeError with a matching
    one-line message on an input that torch accepts.
    """
    ok_ours, result_ours = outcome(ours)
    if refusal and not ok_ours and isinstance(result_ours, ValueError | TypeError):
        message = str(result_ours)
        if re.search(refusal, message) and "\n" not in message:
            return None
    ok_theirs, result_theirs = outcome(theirs)
    assert ok_ours == ok_theirs, (f"ours {'returned' if ok_ours else 'raised'} {result_ours!r}, torch "
                                  f"{'returned' if ok_theirs else 'raised'} {result_theirs!r}")
    return (result_ours, result_theirs) if ok_ours else None


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, dtype: torch.dtype | None = None,
                 scale: float = 1.0, check_dtype: bool = True) -> None:
    """Same shape (and dtype), same nan/inf pattern, values within TOLERANCE[dtype] (atol times scale)."""
    dtype = dtype or theirs.dtype
    rtol, atol = TOLERANCE[dtype]
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol * scale, equal_nan=True,
                               check_dtype=check_dtype)


def gradients(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> list[torch.Tensor | None]:
    """d(sum(w * fn(*inputs)))/d(inputs) for fixed, uneven weights w (a plain sum hides some errors)."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    weights = torch.linspace(-1.0, 2.0, out.numel(), dtype=torch.float64).reshape(out.shape).to(out.dtype)
    return list(torch.autograd.grad(out, leaves, weights, allow_unused=True))


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def assert_same_structure(ours: Any, theirs: Any) -> None:
    """Equal nested containers of equal type: tensors equal in dtype and value, other leaves ==."""
    assert type(ours) is type(theirs), (type(ours), type(theirs))
    if isinstance(ours, torch.Tensor):
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    elif isinstance(ours, dict):
        assert list(ours) == list(theirs)
        for key in ours:
            assert_same_structure(ours[key], theirs[key])
    elif isinstance(ours, list | tuple):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert_same_structure(a, b)
    else:
        assert ours == theirs
