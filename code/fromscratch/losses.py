"""Softmax, log-softmax, log-sum-exp, NLL and a fused cross-entropy: numerically stable, as in torch."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")
CHUNK_BYTES = 1 << 20  # the fused kernel works on blocks of rows of at most 1 MiB: they stay in cache
INLINE_ELEMENTS = 32_000  # below torch's grain size (32768): each op runs on the calling thread
THREADED_ELEMENTS = 1 << 20  # from this many logits on, the blocks are shared among threads


# --------------------------------------------------------------------------- the building blocks
def logsumexp(x: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) along `dim`, with the max trick: exp never sees a positive argument.

    Rows whose max is ±inf are handled as torch does: all -inf gives -inf, any +inf gives +inf.
    """
    _check_float(x, "x")
    m = _finite_row_max(x, dim)
    out = (x - m).exp().sum(dim, keepdim=True).log() + m
    return out if keepdim else out.squeeze(dim)


def _row_max(x: Tensor, dim: int) -> Tensor:
    """max along `dim`, kept as a size-1 axis; zeros for an empty tensor (amax has no identity)."""
    if x.numel() == 0:
        return x.sum(dim, keepdim=True)  # the right shape, checks `dim` like amax would
    return x.amax(dim, keepdim=True)


def _finite_row_max(x: Tensor, dim: int) -> Tensor:
    """_row_max with ±inf and nan maxima replaced by 0: the shift must not turn inf - inf into nan."""
    m = _row_max(x, dim)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `dim`, shifted by the row max so exp cannot overflow."""
    _check_float(x, "x")
    e = (x - _row_max(x, dim)).exp()
    return e / e.sum(dim, keepdim=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """x - logsumexp(x) along `dim`, as (x - max) - log(sum(exp(x - max))): never log(0).

    Subtracting the max first keeps the small differences exact when the logits are huge
    (1e4 in float32 has a spacing of 1e-3; x - logsumexp(x) would round to it).
    """
    _check_float(x, "x")
    shifted = x - _row_max(x, dim)  # a row with +inf or only -inf gives nan everywhere, as in torch
    return shifted - shifted.exp().sum(dim, keepdim=True).log()


def nll_loss(log_probs: Tensor, target: Tensor, ignore_index: int = -100, reduction: str = "mean"
             ) -> Tensor:
    """Negative log-likelihood of class indices `target` under `log_probs` (N, C), by indexing.

    Rows whose target equals `ignore_index` count for nothing: 'mean' divides by the rows kept
    (and gives nan when none is kept, as torch does).
    """
    log_probs, target, restore = _flatten_classes(log_probs, target)
    _check_reduction(reduction)
    keep = target != ignore_index
    safe_target = torch.where(keep, target, torch.zeros_like(target))
    _check_targets(safe_target, log_probs.shape[1])
    picked = log_probs[torch.arange(len(target), device=target.device), safe_target]
    losses = torch.where(keep, -picked, torch.zeros_like(picked))
    return _reduce(losses, keep, reduction, restore)


def cross_entropy_composed(logits: Tensor, target: Tensor, ignore_index: int = -100,
                           reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """cross_entropy written as nll_loss(log_softmax(logits)): the readable, unfused version.

    With label smoothing ε the target is (1-ε)·one_hot + ε/C, so each row adds ε times the mean
    of -log_probs over the classes.
    """
    _check_smoothing(label_smoothing)
    _check_float(logits, "logits")
    log_probs = log_softmax(logits, dim=1 if logits.dim() > 1 else 0)
    nll = nll_loss(log_probs, target, ignore_index, reduction)
    if label_smoothing == 0.0:
        return nll
    flat, flat_target, restore = _flatten_classes(log_probs, target)
    keep = flat_target != ignore_index
    smooth = torch.where(keep, -flat.mean(1), torch.zeros_like(flat[:, 0]))
    return (1 - label_smoothing) * nll + label_smoothing * _reduce(smooth, keep, reduction, restore)


# --------------------------------------------------------------------------- the fused version
class _FusedCrossEntropy(torch.autograd.Function):
    """Forward and backward of cross-entropy in row chunks: no full-size log-probabilities."""

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, keep: Tensor, smoothing: float) -> Tensor:
        safe_target = target.where(keep, 0)
        _check_targets(safe_target, logits.shape[1])
        m, log_sum = _chunked_max_and_log_sum_exp(logits)
        picked = logits.gather(1, safe_target[:, None]).squeeze(1)
        losses = log_sum + (m - picked)  # m - picked is exact where it matters: huge logits
        if smoothing:
            # -mean_c log p_c = log_sum + m - mean_c x_c: the smoothed loss needs one more row mean.
            # Weighted as two losses, not one plus a difference: with a -inf logit both are inf
            # and their sum is inf, where picked - mean would be -inf + inf = nan.
            uniform = log_sum + (m - logits.mean(1))
            losses = (1 - smoothing) * losses + smoothing * uniform
        losses = losses.where(keep, 0.0)
        ctx.save_for_backward(logits, m, log_sum, safe_target, keep)
        ctx.smoothing = smoothing
        return losses

    @staticmethod
    def backward(ctx, grad_losses: Tensor) -> tuple[Tensor | None, ...]:
        logits, m, log_sum, safe_target, keep = ctx.saved_tensors
        scale = grad_losses.where(keep, 0.0)
        if torch.is_grad_enabled():  # create_graph=True: a gradient that is itself differentiable
            return _differentiable_grad(logits, safe_target, scale, ctx.smoothing), None, None, None
        grad = cross_entropy_grad_from_stats(logits, m, log_sum, safe_target, scale, ctx.smoothing)
        return grad, None, None, None


def _differentiable_grad(logits: Tensor, target: Tensor, scale: Tensor, smoothing: float) -> Tensor:
    """scale_i · (softmax(x_i) - (1-ε)·one_hot(t_i) - ε/C) from ops autograd records (double backward).

    Full-size temporaries, unlike the fused backward: only taken when a graph of the gradient is asked
    for, e.g. torch.autograd.grad(loss, x, create_graph=True) for a gradient penalty.
    """
    c = logits.shape[1]
    probs = (logits - logsumexp(logits, 1, keepdim=True)).exp()
    one_hot = torch.nn.functional.one_hot(target, c).to(logits.dtype)
    return (probs - (1 - smoothing) * one_hot - smoothing / c) * scale[:, None]


def _chunked_max_and_log_sum_exp(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Row max m and log(sum(exp(x - m))) of a (N, C) tensor, one cache-sized block at a time.

    Their sum is the logsumexp. Each block's maxima, exp(x - m) in a reused block-sized buffer,
    and row sums are computed while the block is in cache.
    """
    n, c = logits.shape
    m = torch.empty(n, 1, dtype=logits.dtype, device=logits.device)
    sums = torch.empty(n, dtype=logits.dtype, device=logits.device)

    def blocks(start: int, stop: int, rows: int) -> None:
        buffer = torch.empty(min(rows, stop - start), c, dtype=logits.dtype, device=logits.device)
        for x, shift, total in zip(logits[start:stop].split(rows), m[start:stop].split(rows),
                                   sums[start:stop].split(rows), strict=True):
            work = buffer if len(x) == len(buffer) else buffer[:len(x)]
            torch.amax(x, 1, keepdim=True, out=shift)
            torch.sub(x, shift, out=work).exp_()
            torch.sum(work, 1, out=total)

    _run_in_row_blocks(logits, blocks)
    m = m.squeeze(1)
    infinite = m == -torch.inf
    if infinite.any():  # rows of only -inf: shift by 0 (a +inf or nan row stays nan, as in torch)
        m = m.where(~infinite, 0.0)
        sums[infinite] = (logits[infinite] - m[infinite, None]).exp().sum(1)
    return m, sums.log_()


def cross_entropy_grad_from_stats(logits: Tensor, m: Tensor, log_sum: Tensor, target: Tensor,
                                  scale: Tensor, smoothing: float = 0.0) -> Tensor:
    """d(loss_i)/d(logits) scaled per row: scale_i · (softmax(x_i) - (1-ε)·one_hot(t_i) - ε/C).

    `m` and `log_sum` are the forward pass's row statistics, so softmax is exp(x - m) / sum,
    written straight into the gradient's memory with the scale folded into the division.
    """
    n, c = logits.shape
    grad = torch.empty_like(logits)
    row_factor = (scale / log_sum.exp())[:, None]
    row_offset = (scale * (smoothing / c))[:, None]
    shifts = m[:, None]

    def blocks(start: int, stop: int, rows: int) -> None:
        parts = (t[start:stop].split(rows) for t in (logits, shifts, grad, row_factor, row_offset))
        for x, shift, g, factor, offset in zip(*parts, strict=True):
            torch.sub(x, shift, out=g).exp_().mul_(factor)
            if smoothing:
                g.sub_(offset)

    _run_in_row_blocks(logits, blocks)
    rows_index = torch.arange(n, device=logits.device)
    grad.index_put_((rows_index, target), -(1 - smoothing) * scale, accumulate=True)
    return grad


_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (process id, pool): a forked child needs its own


def _without_grad(blocks: Callable[[int, int, int], None], start: int, stop: int, rows: int) -> None:
    """Grad mode is per thread: the pool's threads must not record the blocks' in-place work."""
    with torch.no_grad():
        blocks(start, stop, rows)


def _run_in_row_blocks(logits: Tensor, blocks: Callable[[int, int, int], None]) -> None:
    """Call blocks(start, stop, rows_per_block) over the rows of `logits`.

    On the CPU the blocks are small enough that torch runs each operation on the calling thread
    (no parallel region, no barrier to wait at), and the rows are shared out among a few Python
    threads instead: torch releases the GIL while it computes. A GPU takes everything at once.
    """
    n, c = logits.shape
    if logits.device.type != "cpu" or n * c * logits.element_size() <= CHUNK_BYTES:
        _without_grad(blocks, 0, n, max(n, 1))  # a GPU, or a tensor that fits in cache: one block
        return
    rows = max(1, min(CHUNK_BYTES // logits.element_size(), INLINE_ELEMENTS) // max(c, 1))
    workers = min(torch.get_num_threads(), -(-n // rows)) if n * c >= THREADED_ELEMENTS else 1
    bounds = [n * i // workers for i in range(workers + 1)]
    futures = [_pool(workers - 1).submit(_without_grad, blocks, bounds[i], bounds[i + 1], rows)
               for i in range(1, workers)]
    _without_grad(blocks, bounds[0], bounds[1], rows)  # the calling thread takes the first share
    for future in futures:
        future.result()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The module's thread pool, made again after a fork (threads do not survive one)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1]._max_workers < workers:
        pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="fromscratch")
        _POOL = (os.getpid(), pool)
    return _POOL[1]


def cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of `logits` (N, C[, d...]) against class indices or class probabilities.

    Class indices take the fused path: logsumexp by the max trick in cache-sized row blocks,
    the target logit gathered, and a backward that writes softmax - one_hot directly. The
    semantics of `ignore_index`, `reduction` and `label_smoothing` are those of
    torch.nn.functional.cross_entropy, double backward included (create_graph=True). One deliberate
    difference: an empty class dimension (C = 0) is refused, where torch returns nan or 0.
    """
    _check_float(logits, "logits")
    _check_reduction(reduction)
    _check_smoothing(label_smoothing)
    if target.is_floating_point():
        return _soft_target_cross_entropy(logits, target, reduction, label_smoothing)
    flat, flat_target, restore = _flatten_classes(logits, target)
    keep = flat_target != ignore_index
    losses = _FusedCrossEntropy.apply(flat, flat_target, keep, float(label_smoothing))
    return _reduce(losses, keep, reduction, restore)


def _soft_target_cross_entropy(logits: Tensor, probs: Tensor, reduction: str, smoothing: float
                               ) -> Tensor:
    """-sum_c p_c log softmax(x)_c per row, for targets given as class probabilities."""
    if probs.shape != logits.shape:
        raise ValueError(f"probability targets must have the logits' shape {tuple(logits.shape)}, "
                         f"got {tuple(probs.shape)}")
    if logits.dim() == 0:
        raise ValueError("logits must have a class dimension: (C,) or (N, C, ...), got a scalar")
    _check_classes(logits)
    dim = 1 if logits.dim() > 1 else 0
    if smoothing:
        probs = probs * (1 - smoothing) + smoothing / logits.shape[dim]
    losses = -(probs * log_softmax(logits, dim)).sum(dim)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.mean()  # over every position (N·d1·...), as torch does; nan when there is none


# --------------------------------------------------------------------------- gradients by hand
def softmax_backward(probs: Tensor, grad_output: Tensor, dim: int = -1) -> Tensor:
    """Vector-Jacobian product of softmax: p ⊙ (g - <g, p>), given the softmax output p."""
    return probs * (grad_output - (grad_output * probs).sum(dim, keepdim=True))


def log_softmax_backward(log_probs: Tensor, grad_output: Tensor, dim: int = -1) -> Tensor:
    """Vector-Jacobian product of log_softmax: g - softmax · sum(g)."""
    return grad_output - log_probs.exp() * grad_output.sum(dim, keepdim=True)


def cross_entropy_grad(logits: Tensor, target: Tensor, ignore_index: int = -100,
                       reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Gradient of cross_entropy(logits, target) (N, C) with respect to the logits: softmax - one_hot.

    Divided by the number of kept rows for reduction='mean'; for 'none' it is the gradient of
    the sum of the row losses.
    """
    _check_reduction(reduction)
    _check_smoothing(label_smoothing)
    if logits.dim() != 2:
        raise ValueError(f"cross_entropy_grad takes (N, C) logits, got shape {tuple(logits.shape)}")
    _check_float(logits, "logits")
    _check_classes(logits)
    keep = target != ignore_index
    safe_target = torch.where(keep, target, torch.zeros_like(target))
    _check_targets(safe_target, logits.shape[1])
    scale = keep.to(logits.dtype)
    if reduction == "mean":  # every row ignored: the loss is nan but its gradient 0, as in torch
        scale = scale / keep.sum().clamp_min(1)
    m, log_sum = _chunked_max_and_log_sum_exp(logits)
    return cross_entropy_grad_from_stats(logits, m, log_sum, safe_target, scale, float(label_smoothing))


# --------------------------------------------------------------------------- helpers
def _reduce(losses: Tensor, keep: Tensor, reduction: str, restore: tuple[int, ...]) -> Tensor:
    """Apply torch's reductions: 'mean' averages over the rows not ignored."""
    if reduction == "none":
        return losses.reshape(restore)
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / keep.sum()


def _flatten_classes(x: Tensor, target: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """(N, C, d1, ...) -> (N·d1·..., C) and its targets; (C,) -> (1, C). Also the loss shape."""
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if x.dim() == 0:
        raise ValueError("input must have a class dimension: (C,) or (N, C, ...), got a scalar")
    _check_classes(x)
    if x.dim() == 1:
        if target.dim() != 0:
            raise ValueError(f"unbatched input (C,) needs a scalar target, got shape {tuple(target.shape)}")
        return x[None], target.reshape(1).long(), ()
    if target.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"input (N, C, ...) = {tuple(x.shape)} needs target (N, ...), "
                         f"got {tuple(target.shape)}")
    if x.dim() == 2:
        return x, target.long(), tuple(target.shape)
    c = x.shape[1]
    return x.movedim(1, -1).reshape(-1, c), target.reshape(-1).long(), tuple(target.shape)


def _check_classes(x: Tensor) -> None:
    """At least one class: with C = 0 torch returns nan or 0 depending on the path, never a loss."""
    classes = x.shape[1] if x.dim() > 1 else x.shape[0]
    if classes == 0:
        raise ValueError(f"the class dimension of the input {tuple(x.shape)} is empty; a loss over "
                         "classes needs at least one class")


def _check_targets(target: Tensor, n_classes: int) -> None:
    """Class indices in range, checked on the CPU (a GPU kernel asserts it without a sync)."""
    if not target.numel() or target.device.type != "cpu":
        return
    low, high = (int(v) for v in torch.aminmax(target))
    if low < 0 or high >= n_classes:
        raise ValueError(f"class indices must lie in [0, {n_classes}) or equal ignore_index, "
                         f"got values from {low} to {high}")


def _check_float(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point tensor, got {kind}; convert it with .float()")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")


def _check_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing}")
