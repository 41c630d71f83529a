"""Differential property tests of fromscratch.norms against torch.linalg, torch.nn and torch.cdist.

Property: the same value and gradient as torch within property_helpers.TOLERANCE, or both raise.
Deliberate differences the tests encode: the pairwise distances accept float16/bfloat16, which
torch.cdist refuses (compared with cdist in float32, rounded); `spectral_norm` is power iteration,
compared with torch's SVD-based 2-norm to 1e-3 (it stops when sigma changes by less than 1e-7) and on
half precision against float32; `clip_grad_norm` refuses max_norm <= 0 (torch flips or zeroes the
gradients); the 'gram' distances cancel for near pairs far from 0 by design (their error is bounded by
eps * (|x|^2 + |y|^2), which the test states).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from property_helpers import (
    TOLERANCE,
    assert_close,
    budget,
    dtypes,
    finite,
    gradients,
    same_outcome,
    shapes,
    tensors,
)

from fromscratch import norms

MATRIX_NORMS = ((norms.frobenius_norm, "fro"), (norms.matrix_norm_1, 1), (norms.matrix_norm_inf, math.inf))
P_VALUES = st.sampled_from([1.0, 2.0, 3.0, 1.5, math.inf, 0.5, 1])


@st.composite
def tensor_and_dim(draw, magnitudes: str = "any"):
    shape = draw(shapes(0, 3))
    x = draw(tensors(shape, draw(dtypes), magnitudes))
    rank = max(len(shape), 1)
    dim = draw(st.one_of(st.none(), st.integers(-rank - 1, rank),
                         st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=2).map(tuple)))
    return x, dim


def magnitude(x: torch.Tensor) -> float:
    finite_x = x[torch.isfinite(x)].double()
    return 1.0 + (float(finite_x.abs().max()) if finite_x.numel() else 0.0)


@given(tensor_and_dim(), P_VALUES)
def test_vector_norm_values(case, p) -> None:
    x, dim = case
    both = same_outcome(lambda: norms.vector_norm(x, p, dim), lambda: _torch_norm(x, p, dim),
                        refusal="p must be >= 1")
    if both:
        assert_close(*both)


def _torch_norm(x, p, dim):
    if p < 1:
        raise ValueError("torch accepts p < 1; ours refuses it (not a norm)")
    if x.ndim == 0 and dim is not None:  # torch raises |x|^p for a 0-d tensor with a dim, but
        x = x.reshape(1)  # not for the same (1,) tensor; ours gives |x| for both
    return torch.linalg.vector_norm(x, p, dim=dim)


@given(tensor_and_dim("wide"), P_VALUES.filter(lambda p: p >= 1))
def test_vector_norm_gradients(case, p) -> None:
    x, dim = case
    if same_outcome(lambda: norms.vector_norm(x, p, dim), lambda: _torch_norm(x, p, dim)) is None:
        return
    if not finite(torch.linalg.vector_norm(x.double(), p, dim=dim)):
        return
    wide = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    power = 2.0 if math.isinf(p) else max(p, 2.0)
    powers = x.abs().to(wide) ** power
    if ((x != 0) & ((powers < torch.finfo(wide).tiny) | ~torch.isfinite(powers))).any():
        return  # |x|^p under- or overflows: torch's gradient is then 0 or ±1 depending on its code path
    ours = gradients(lambda t: norms.vector_norm(t, p, dim), x)[0]
    theirs = gradients(lambda t: torch.linalg.vector_norm(t, p, dim=dim), x)[0]
    assert_close(ours, theirs)


@given(st.sampled_from([1.0, 1.5, 2.0, 3.0, math.inf]), st.integers(1, 50))
def test_unit_ball_boundary_has_norm_one(p, points) -> None:
    boundary = norms.unit_ball_boundary(p, points)
    assert boundary.shape == (points, 2)
    assert_close(torch.linalg.vector_norm(boundary, p, dim=1), torch.ones(points, dtype=torch.float64))


@st.composite
def matrices(draw, magnitudes: str = "any", max_side: int = 4):
    shape = draw(st.one_of(shapes(2, 2, max_side=max_side), shapes(0, 3, max_side=max_side)))
    return draw(tensors(shape, draw(dtypes), magnitudes))


@given(matrices())
def test_matrix_norms(a) -> None:
    for ours, order in MATRIX_NORMS:
        theirs = lambda o=order: (torch.linalg.matrix_norm(a, o) if a.dim() == 2  # noqa: E731
                                  else _refuse("ours takes 2-D only"))
        both = same_outcome(lambda f=ours: f(a), theirs)
        if both:
            assert_close(*both)


def _refuse(message: str):
    raise ValueError(message)


@given(matrices("wide"))
def test_matrix_norm_gradients(a) -> None:
    if a.dim() != 2 or not a.numel() or not finite(torch.linalg.matrix_norm(a.double(), "fro")):
        return
    for ours, order in MATRIX_NORMS:
        column_or_row = a.abs().sum(0 if order == 1 else 1)
        if order != "fro" and (column_or_row == column_or_row.max()).sum() > 1:
            continue  # tied maxima: torch and ours pick different subgradients, both valid
        expected = gradients(lambda t, o=order: torch.linalg.matrix_norm(t, o), a)[0]
        assert_close(gradients(ours, a)[0], expected)


@settings(max_examples=budget(1.0))
@given(matrices("normal", max_side=5))
def test_spectral_norm_by_power_iteration(a) -> None:
    low = a.dtype in (torch.float16, torch.bfloat16)
    both = same_outcome(lambda: norms.spectral_norm(a, iterations=2000, tol=1e-12),
                        lambda: (torch.linalg.matrix_norm(a.float() if low else a, 2).to(a.dtype)
                                 if a.dim() == 2 else _refuse("ours takes 2-D only")))
    if both:
        ours, theirs = both
        assert ours.dtype == theirs.dtype
        torch.testing.assert_close(ours.double(), theirs.double(), rtol=max(1e-3, TOLERANCE[a.dtype][0]),
                                   atol=TOLERANCE[a.dtype][1])


@st.composite
def prediction_and_target(draw, magnitudes: str = "any"):
    dtype = draw(dtypes)
    shape = draw(shapes(0, 3))
    target_shape = tuple(draw(st.sampled_from([side, 1])) for side in shape)  # broadcasts
    if draw(st.booleans()):
        target_shape = (*target_shape[:-1], target_shape[-1] + 1) if target_shape else (2,)  # may not
    return draw(tensors(shape, dtype, magnitudes)), draw(tensors(target_shape, dtype, magnitudes))


def _torch_loss(fn, prediction, target):
    return fn(*torch.broadcast_tensors(prediction, target))


@given(prediction_and_target())
def test_mse_and_mae_values(case) -> None:
    prediction, target = case
    for ours, theirs in ((norms.mse, F.mse_loss), (norms.mae, F.l1_loss)):
        both = same_outcome(lambda o=ours: o(prediction, target),
                            lambda t=theirs: _torch_loss(t, prediction, target))
        if both:
            assert_close(*both)


@given(prediction_and_target("wide"))
def test_mse_and_mae_gradients(case) -> None:
    prediction, target = case
    for ours, theirs in ((norms.mse, F.mse_loss), (norms.mae, F.l1_loss)):
        both = same_outcome(lambda o=ours: o(prediction.double(), target.double()),
                            lambda t=theirs: _torch_loss(t, prediction.double(), target.double()))
        if not both or not finite(both[1]) or not prediction.numel():
            continue
        expected = gradients(lambda p, t, f=theirs: _torch_loss(f, p, t), prediction, target)
        for a, b in zip(gradients(ours, prediction, target), expected, strict=True):
            # A gradient within rounding of the dtype's largest value may round to inf on one side
            # (ours rounds each term to nearest, torch in steps): those elements are not compared.
            edge = b.abs() > 0.99 * torch.finfo(b.dtype).max
            assert_close(a.masked_fill(edge, 0), b.masked_fill(edge, 0), scale=magnitude(prediction))


@st.composite
def vector_pairs(draw, magnitudes: str = "any"):
    dtype = draw(dtypes)
    shape = draw(shapes(1, 3))
    rank = len(shape)
    return (draw(tensors(shape, dtype, magnitudes)), draw(tensors(shape, dtype, magnitudes)),
            draw(st.integers(-rank, rank - 1)), draw(st.sampled_from([1e-8, 1e-3, 0.0])))


@given(vector_pairs())
def test_cosine_similarity_values(case) -> None:
    x, y, dim, eps = case
    both = same_outcome(lambda: norms.cosine_similarity(x, y, dim, eps),
                        lambda: F.cosine_similarity(x, y, dim, eps))
    if both:
        assert_close(*both)


@given(vector_pairs("wide"))
def test_cosine_similarity_gradients(case) -> None:
    x, y, dim, eps = case
    if not finite(F.cosine_similarity(x.double(), y.double(), dim, eps)) or x.dtype != torch.float64:
        return  # gradients in float64 only: in lower precision both round differently inside the norms
    for a, b in zip(gradients(lambda u, v: norms.cosine_similarity(u, v, dim, eps), x, y),
                    gradients(lambda u, v: F.cosine_similarity(u, v, dim, eps), x, y), strict=True):
        assert_close(a, b, scale=1e3)


@st.composite
def gradient_sets(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    grads = draw(st.lists(shapes(0, 2).flatmap(lambda s: tensors(s, dtype, "any")), min_size=0, max_size=3))
    single = draw(st.booleans()) and len(grads) == 1
    return grads, single, draw(st.sampled_from([1e-3, 0.5, 1.0, 10.0, 1e6, 0.0, -1.0]))


@given(gradient_sets())
def test_clip_grad_norm(case) -> None:
    grads, single, max_norm = case

    def parameters():
        made = []
        for g in grads:
            p = torch.nn.Parameter(torch.zeros_like(g))
            p.grad = g.clone()
            made.append(p)
        return made[0] if single else made

    ours_parameters, torch_parameters = parameters(), parameters()
    both = same_outcome(lambda: norms.clip_grad_norm(ours_parameters, max_norm),
                        lambda: torch.nn.utils.clip_grad_norm_(torch_parameters, max_norm),
                        refusal="max_norm must be positive")
    if both:
        assert_close(*both, check_dtype=False)
        listed = lambda ps: [ps] if single else ps  # noqa: E731
        for a, b in zip(listed(ours_parameters), listed(torch_parameters), strict=True):
            assert_close(a.grad, b.grad)


@st.composite
def point_sets(draw, magnitudes: str = "wide"):
    dtype = draw(dtypes)
    d = draw(st.integers(0, 4))
    n, m = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    d_y = d if draw(st.integers(0, 9)) else d + 1  # sometimes the feature counts differ
    return draw(tensors((n, d), dtype, magnitudes)), draw(tensors((m, d_y), dtype, magnitudes))


def _cdist(x, y, squared: bool):
    """torch.cdist, computed in float32 for the half types it refuses, rounded back."""
    low = x.dtype in (torch.float16, torch.bfloat16)
    distances = torch.cdist(x.float() if low else x, y.float() if low else y)
    if squared:
        distances = distances**2
    return distances.to(x.dtype)


@given(point_sets(), st.sampled_from(norms.DISTANCE_METHODS), st.booleans())
def test_pairwise_distances(case, method, squared) -> None:
    x, y = case
    both = same_outcome(lambda: norms.pairwise_distances(x, y, method, squared),
                        lambda: _cdist(x, y, squared))
    if not both:
        return
    ours, theirs = both
    if not x.numel() * y.numel():
        assert_close(ours, theirs)
        return
    wide = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    limit = torch.finfo(wide).max / 4  # squares and their sums beyond this overflow the working dtype
    xd, yd = x.double(), y.double()
    sizes = (xd**2).sum(1)[:, None] + (yd**2).sum(1)[None, :]
    overflow = (sizes > limit) if method == "gram" else (((xd[:, None] - yd[None]) ** 2).sum(-1) > limit)
    if method == "gram":  # |x|^2 + |y|^2 - 2 x.y: the error is a few eps times |x|^2 + |y|^2
        bound = 8 * torch.finfo(wide).eps * sizes + TOLERANCE[x.dtype][1]
        if not squared:
            ours, theirs = ours**2, theirs**2  # compare squared: sqrt amplifies the error near 0
        ours, theirs = ours.double(), theirs.double()
        bound = bound + 8 * torch.finfo(x.dtype).eps * theirs.abs()  # the rounding to x.dtype
        ok = (ours - theirs).abs() <= bound + TOLERANCE[x.dtype][0] * theirs.abs()
        assert bool((ok | (ours == theirs) | overflow).all()), (ours, theirs)
        return
    # deliberate: where a squared distance overflows the working dtype ours is inf (cdist may be finite)
    assert bool((ours[overflow] == torch.inf).all()), ours
    assert_close(ours[~overflow], theirs[~overflow], scale=magnitude(x) + magnitude(y))


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.sampled_from(norms.DISTANCE_METHODS))
def test_distance_memory_bytes_grows_with_every_size(n, m, d, method) -> None:
    base = norms.distance_memory_bytes(n, m, d, method)
    assert base >= 0 and norms.distance_memory_bytes(n, m, d, method, itemsize=8) == 2 * base
    assert norms.distance_memory_bytes(n + 1, m, d, method) >= base
