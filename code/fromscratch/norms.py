"""Norms and distances from scratch: vector and matrix norms, power iteration, pairwise distances.

Pairwise squared distances come three ways, with different memory and rounding:

    broadcast  ((x[:, None] - y[None]) ** 2).sum(-1)        n*m*d numbers in flight, accurate
    einsum     einsum('ijd,ijd->ij', diff, diff)            n*m*d (the difference only), accurate
    gram       |x|^2 + |y|^2 - 2 x y^T                      n*m numbers, one matmul, but it
                                                           cancels catastrophically for points
                                                           close to each other and far from 0

and `gram_safe` fixes the Gram trick: centre both sets on a common point (shrinks |x|, |y|),
then recompute exactly the few pairs whose result is still small against their norms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

DISTANCE_METHODS = ("broadcast", "einsum", "gram", "gram_safe")


def _check_tensor(x: torch.Tensor, name: str, ndim: int | None = None) -> None:
    """Raise a one-line TypeError/ValueError unless `x` is a floating tensor of `ndim` dims."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}; call .float() first")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(x.shape)}")


# --- Vector norms ------------------------------------------------------------------------------

def vector_norm(x: torch.Tensor, p: float = 2.0, dim: int | tuple[int, ...] | None = None
                ) -> torch.Tensor:
    """The Lp norm (sum |x_i|^p)^(1/p) over `dim` (all elements if None); p = inf gives max |x_i|.

    p must be >= 1 (below 1 the formula is no longer a norm: the triangle inequality fails).
    As torch.linalg.vector_norm: float16/bfloat16 are summed in float32; a norm over one element is
    |x| exactly; the gradient is 0 where the norm is 0, and p = inf shares it among tied maxima.
    One deliberate difference: for a 0-d tensor with an explicit `dim` torch raises |x| to the p
    (so 1e30 in bfloat16 gives inf) where it does not for the same value of shape (1,); ours
    gives |x| for both.
    """
    _check_tensor(x, "x")
    if not isinstance(p, int | float) or not p >= 1:
        raise ValueError(f"p must be >= 1 (or math.inf) for a norm, got {p}")
    return _VectorNorm.apply(x, float(p), _reduced_dims(x, dim))


def _reduced_dims(x: torch.Tensor, dim: int | tuple[int, ...] | None) -> tuple[int, ...]:
    """`dim` as a tuple of non-negative axes (every axis for None), checked like torch does."""
    if dim is None:
        return tuple(range(x.ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    rank = max(x.ndim, 1)
    if not all(isinstance(d, int) and -rank <= d < rank for d in dims):
        raise IndexError(f"dim must name axes of x (shape {tuple(x.shape)}), got {dim!r}")
    axes = tuple(d % rank for d in dims)
    if len(set(axes)) != len(axes):
        raise ValueError(f"dim names an axis twice: {dim!r}")
    return axes if x.ndim else ()


class _VectorNorm(torch.autograd.Function):
    """The Lp norm with torch's gradient: 0 at a zero norm instead of nan (sqrt has no slope at 0)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float, dims: tuple[int, ...]) -> torch.Tensor:
        magnitudes = x.abs().to(_accumulation_dtype(x.dtype))
        count = math.prod(x.shape[d] for d in dims)
        if math.isinf(p):
            if count == 0:
                raise ValueError(f"the inf-norm of an empty reduction is undefined (x: {tuple(x.shape)})")
            norm = magnitudes.amax(dim=dims) if dims else magnitudes
        elif p == 1 or count == 1:  # one element: |x|, never squared (no overflow), as torch does
            norm = magnitudes.sum(dim=dims)
        elif p == 2:
            norm = (magnitudes * magnitudes).sum(dim=dims).sqrt()
        else:
            norm = (magnitudes**p).sum(dim=dims) ** (1.0 / p)
        norm = norm.to(x.dtype)
        ctx.save_for_backward(x, norm)
        ctx.p, ctx.dims = p, dims
        return norm

    @staticmethod
    def backward(ctx, grad_norm: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, norm = ctx.saved_tensors
        p, dims = ctx.p, ctx.dims
        norm, grad_norm = _unsqueeze(norm, dims), _unsqueeze(grad_norm, dims)
        if math.isinf(p):  # d max|x| / dx: shared among the elements that reach the max
            ties = (x.abs() == norm).to(x.dtype)
            return grad_norm * x.sgn() * ties / ties.sum(dim=dims, keepdim=True), None, None
        if p == 1:
            return grad_norm * x.sgn(), None, None
        slope = x.sgn() * x.abs() ** (p - 1) / norm ** (p - 1)  # x |x|^(p-2) / norm^(p-1)
        return grad_norm * slope.masked_fill(norm == 0, 0.0), None, None


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for the half-precision types (torch sums them in float32), else the dtype itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _unsqueeze(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Put the reduced axes back as size-1 axes, so `t` broadcasts against the input."""
    for d in sorted(dims):
        t = t.unsqueeze(d)
    return t


def unit_ball_boundary(p: float, points: int = 400) -> torch.Tensor:
    """(points, 2) points on the 2-D unit sphere of the Lp norm: {x : ||x||_p = 1}."""
    angles = torch.linspace(0, 2 * math.pi, points, dtype=torch.float64)
    directions = torch.stack([angles.cos(), angles.sin()], dim=1)
    return directions / vector_norm(directions, p=p, dim=1)[:, None]


# --- Matrix norms ------------------------------------------------------------------------------

def frobenius_norm(a: torch.Tensor) -> torch.Tensor:
    """sqrt(sum of squared entries): the L2 norm of the matrix read as one long vector."""
    _check_tensor(a, "a", ndim=2)
    return vector_norm(a, p=2)


def matrix_norm_1(a: torch.Tensor) -> torch.Tensor:
    """The norm induced by L1: the largest column sum of |a|."""
    _check_tensor(a, "a", ndim=2)
    return _largest(a.abs().sum(dim=0))


def matrix_norm_inf(a: torch.Tensor) -> torch.Tensor:
    """The norm induced by L-infinity: the largest row sum of |a|."""
    _check_tensor(a, "a", ndim=2)
    return _largest(a.abs().sum(dim=1))


def _largest(sums: torch.Tensor) -> torch.Tensor:
    """The largest of the row or column sums; 0 for an empty matrix, as torch.linalg.matrix_norm."""
    return sums.amax() if sums.numel() else sums.sum()


def power_iteration(a: torch.Tensor, iterations: int = 100, tol: float = 1e-7, seed: int = 0
                    ) -> tuple[torch.Tensor, list[float]]:
    """The spectral norm (largest singular value) of `a` by power iteration on a^T a.

    v <- a^T (a v), normalised, converges to the top right singular vector; |a v| to sigma_max.
    Stops after `iterations` steps or when sigma changes by less than `tol` (relative).
    Returns sigma and its estimate after each step (to plot the convergence).
    """
    _check_tensor(a, "a", ndim=2)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(a.shape[1], generator=generator, dtype=a.dtype).to(a.device)
    v = v / vector_norm(v)
    sigma = torch.zeros((), dtype=a.dtype, device=a.device)
    history: list[float] = []
    for _ in range(iterations):
        av = a @ v
        new_sigma = vector_norm(av)
        w = a.T @ av
        w_norm = vector_norm(w)
        if w_norm == 0:  # a v = 0: a is zero (or v landed in its null space)
            return new_sigma, [*history, float(new_sigma)]
        v = w / w_norm
        history.append(float(new_sigma))
        converged = abs(float(new_sigma - sigma)) <= tol * float(new_sigma)
        sigma = new_sigma
        if converged:
            break
    return sigma, history


def spectral_norm(a: torch.Tensor, iterations: int = 100, tol: float = 1e-7) -> torch.Tensor:
    """The largest singular value of `a`, by power iteration (see `power_iteration`)."""
    return power_iteration(a, iterations=iterations, tol=tol)[0]


# --- Where norms appear in deep learning -------------------------------------------------------

def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error: the squared L2 norm of the residual, divided by its (broadcast) size.

    The squared norm is summed directly, sum(r * r), not squared after a square root: no rounding
    through sqrt, and a finite gradient 2 r / n even where the sum overflows (as in torch).
    """
    residual = _residual(prediction, target)
    wide = residual.to(_accumulation_dtype(residual.dtype))  # half precision is summed in float32
    return ((wide * wide).sum() / residual.numel()).to(residual.dtype)


def mae(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error: the L1 norm of the residual, divided by its (broadcast) size.

    Half precision is summed and divided in float32, as torch does: a float16 sum can overflow
    where the mean does not.
    """
    residual = _residual(prediction, target)
    wide = residual.to(_accumulation_dtype(residual.dtype))
    return (vector_norm(wide, p=1) / residual.numel()).to(residual.dtype)


def _residual(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """prediction - target, broadcast as torch's mse_loss does (the mean is over the broadcast size)."""
    _check_tensor(prediction, "prediction")
    _check_tensor(target, "target")
    try:
        torch.broadcast_shapes(prediction.shape, target.shape)
    except RuntimeError:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} do not "
                         "broadcast; give them one shape") from None
    return prediction - target


def cosine_similarity(x: torch.Tensor, y: torch.Tensor, dim: int = -1, eps: float = 1e-8
                      ) -> torch.Tensor:
    """x . y / (|x| |y|) along `dim`; each norm is floored at `eps` as torch does.

    As in torch, each vector is divided by its floored norm before the dot product (no overflow of
    |x| |y|), and the floor is invisible to autograd: the gradient is that of the unfloored norm.
    """
    _check_tensor(x, "x")
    _check_tensor(y, "y")
    return (_unit(x, dim, eps) * _unit(y, dim, eps)).sum(dim=dim)


def _unit(x: torch.Tensor, dim: int, eps: float) -> torch.Tensor:
    """x / max(|x|, eps) along `dim`, the max applied to the value only (torch clamps under no_grad)."""
    norm = vector_norm(x, dim=dim)
    floored = torch.where(norm < eps, norm + (eps - norm).detach(), norm)
    return x / _unsqueeze(floored, _reduced_dims(x, dim))


def clip_grad_norm(parameters: torch.Tensor | Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale all gradients together so that their global L2 norm is at most `max_norm`.

    The global norm is the L2 norm of every gradient concatenated into one vector. Returns the
    norm before clipping, like `torch.nn.utils.clip_grad_norm_`, which also takes one tensor.
    max_norm <= 0 is refused (torch would zero the gradients, or flip them for a negative bound).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    if isinstance(parameters, torch.Tensor):  # one tensor, as torch accepts
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = vector_norm(torch.stack([vector_norm(g) for g in grads]))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale)
    return total


# --- Pairwise distances ------------------------------------------------------------------------

def _check_points(x: torch.Tensor, y: torch.Tensor) -> None:
    _check_tensor(x, "x", ndim=2)
    _check_tensor(y, "y", ndim=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of features, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")


def sq_distances_broadcast(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|x_i - y_j|^2 by broadcasting (n, 1, d) - (1, m, d): two (n, m, d) temporaries."""
    _check_points(x, y)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(dim=-1)


def sq_distances_einsum(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|x_i - y_j|^2 as einsum('ijd,ijd->ij') of the differences: one (n, m, d) temporary."""
    _check_points(x, y)
    diff = x[:, None, :] - y[None, :, :]
    return torch.einsum("ijd,ijd->ij", diff, diff)


def sq_distances_gram(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|x_i|^2 + |y_j|^2 - 2 x_i . y_j: one matmul, (n, m) memory, cancellation for near pairs."""
    _check_points(x, y)
    x_sq = (x * x).sum(dim=1)
    y_sq = (y * y).sum(dim=1)
    return x_sq[:, None] + y_sq[None, :] - 2.0 * (x @ y.T)


def sq_distances_gram_safe(x: torch.Tensor, y: torch.Tensor, risk: float = 1e-3) -> torch.Tensor:
    """The Gram trick made safe: centre, clamp at 0, recompute at-risk pairs exactly.

    1. Subtract one common point (the mean of x) from both sets: distances do not change, but
       the norms, and with them the rounding error ~ eps * (|x|^2 + |y|^2), shrink.
    2. A pair is at risk when its squared distance is below `risk` times |x|^2 + |y|^2 (then
       the relative error can exceed about eps / risk); those pairs are recomputed directly.
    3. Clamp at zero: a squared distance is never negative.
    """
    _check_points(x, y)
    centre = x.mean(dim=0, keepdim=True)
    xc, yc = x - centre, y - centre
    x_sq, y_sq = (xc * xc).sum(dim=1), (yc * yc).sum(dim=1)
    scale = x_sq[:, None] + y_sq[None, :]
    d2 = scale - 2.0 * (xc @ yc.T)
    safe = d2 >= risk * scale  # False also for nan (inf - inf: the squares overflowed) ...
    safe &= torch.isfinite(scale)  # ... and where they overflowed to inf
    rows, cols = torch.nonzero(~safe, as_tuple=True)
    if rows.numel():  # from the original points: centring on a huge mean can round small ones away
        d2[rows, cols] = ((x[rows] - y[cols]) ** 2).sum(dim=1)
    return d2.clamp_min_(0.0)


SQ_DISTANCES = {"broadcast": sq_distances_broadcast, "einsum": sq_distances_einsum,
                "gram": sq_distances_gram, "gram_safe": sq_distances_gram_safe}


def pairwise_distances(x: torch.Tensor, y: torch.Tensor, method: str = "gram_safe",
                       squared: bool = False) -> torch.Tensor:
    """(n, m) Euclidean distances between the rows of x (n, d) and y (m, d), like torch.cdist.

    Unlike torch.cdist it accepts float16 and bfloat16: those are computed in float32 and rounded.
    """
    if method not in SQ_DISTANCES:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(DISTANCE_METHODS)}")
    _check_points(x, y)
    wide = _accumulation_dtype(x.dtype)
    d2 = SQ_DISTANCES[method](x.to(wide), y.to(wide))
    return (d2 if squared else d2.clamp_min(0.0).sqrt()).to(x.dtype)


def distance_memory_bytes(n: int, m: int, d: int, method: str, itemsize: int = 4) -> int:
    """Bytes of the largest temporaries each method creates (the textbook count, not measured)."""
    counts = {"broadcast": 2 * n * m * d + n * m, "einsum": n * m * d + n * m,
              "gram": 2 * n * m + n + m, "gram_safe": 3 * n * m + (n + m) * d + n + m}
    if method not in counts:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(DISTANCE_METHODS)}")
    return counts[method] * itemsize
