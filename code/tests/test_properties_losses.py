"""Differential property tests of fromscratch.losses against torch (Hypothesis generates the inputs).

Property: the same value and gradient as torch within property_helpers.TOLERANCE for the dtype, or both
raise. Shapes include empty and size-1 axes and extra class-wise dimensions; values include tiny, huge,
±inf and nan. Gradients are compared on finite inputs (on non-finite ones both give nan patterns that
depend on the order of operations, not on the formula).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from property_helpers import assert_close, dtypes, finite, gradients, same_outcome, shapes, tensors

from fromscratch import losses

REDUCTIONS = st.sampled_from(["mean", "sum", "none"])
NO_CLASSES = "class dimension of the input .* is empty"  # deliberate: C = 0 is refused


def softmax_scale(x: torch.Tensor) -> float:
    """Absolute errors of log-space results grow with the logits' magnitude (one ulp of max |x|)."""
    finite_x = x[torch.isfinite(x)]
    return 1.0 + (float(finite_x.abs().max()) if finite_x.numel() else 0.0)


@st.composite
def logits_and_dim(draw, magnitudes: str = "any"):
    shape = draw(shapes(0, 3))
    dtype = draw(dtypes)
    x = draw(tensors(shape, dtype, magnitudes))
    rank = max(len(shape), 1)
    dim = draw(st.integers(-rank - 1, rank))  # one beyond each end: both must refuse it
    return x, dim


@given(logits_and_dim(), st.booleans())
def test_logsumexp_softmax_log_softmax_values(case, keepdim) -> None:
    x, dim = case
    scale = softmax_scale(x)
    pairs = ((lambda: losses.logsumexp(x, dim, keepdim), lambda: torch.logsumexp(x, dim, keepdim)),
             (lambda: losses.softmax(x, dim), lambda: F.softmax(x, dim)),
             (lambda: losses.log_softmax(x, dim), lambda: F.log_softmax(x, dim)))
    for ours, theirs in pairs:
        both = same_outcome(ours, theirs)
        if both:
            assert_close(*both, scale=scale)


@given(logits_and_dim("wide"))
def test_softmax_family_gradients(case) -> None:
    x, dim = case
    if not -max(x.dim(), 1) <= dim < max(x.dim(), 1):
        return
    scale = softmax_scale(x)
    pairs = ((lambda t: losses.logsumexp(t, dim), lambda t: torch.logsumexp(t, dim)),
             (lambda t: losses.softmax(t, dim), lambda t: F.softmax(t, dim)),
             (lambda t: losses.log_softmax(t, dim), lambda t: F.log_softmax(t, dim)))
    for ours, theirs in pairs:
        assert_close(gradients(ours, x)[0], gradients(theirs, x)[0], scale=scale)


@given(logits_and_dim("wide"))
def test_hand_written_softmax_backwards_equal_autograd(case) -> None:
    x, dim = case
    if not -max(x.dim(), 1) <= dim < max(x.dim(), 1):
        return
    grad_out = torch.linspace(-1, 2, x.numel(), dtype=torch.float64).reshape(x.shape).to(x.dtype)
    leaf = x.clone().requires_grad_()
    probs = F.softmax(leaf, dim)
    (expected,) = torch.autograd.grad(probs, leaf, grad_out)
    assert_close(losses.softmax_backward(probs.detach(), grad_out, dim), expected, scale=2.0)
    log_probs = F.log_softmax(leaf, dim)
    (expected,) = torch.autograd.grad(log_probs, leaf, grad_out)
    assert_close(losses.log_softmax_backward(log_probs.detach(), grad_out, dim), expected, scale=2.0)


@st.composite
def classification(draw, magnitudes: str = "any", min_classes: int = 0):
    """Logits (C,), (N, C) or (N, C, d...), class-index targets (some ignored, some out of range)."""
    dtype = draw(dtypes)
    rank = draw(st.integers(1, 4))
    shape = draw(shapes(rank, rank, max_side=4))
    class_axis = 1 if rank >= 2 else 0
    shape = (*shape[:class_axis], max(shape[class_axis], min_classes), *shape[class_axis + 1:])
    classes = shape[class_axis]
    logits = draw(tensors(shape, dtype, magnitudes))
    target_shape = (shape[0], *shape[2:]) if rank >= 2 else ()
    ignore_index = draw(st.sampled_from([-100, 0, 1, 7]))
    picks = st.one_of(st.integers(0, max(classes - 1, 0)), st.just(ignore_index),
                      st.integers(-2, classes + 1))
    n = 1
    for side in target_shape:
        n *= side
    target = torch.tensor(draw(st.lists(picks, min_size=n, max_size=n)), dtype=torch.long)
    target = target.reshape(target_shape).to(draw(st.sampled_from([torch.long, torch.int32])))
    return logits, target, ignore_index


def ce_kwargs(draw_reduction: str, smoothing: float, ignore_index: int) -> dict:
    return dict(ignore_index=ignore_index, reduction=draw_reduction, label_smoothing=smoothing)


SMOOTHING = st.sampled_from([0.0, 0.1, 1.0])


def torch_targets(target: torch.Tensor) -> torch.Tensor:
    """torch takes int32 class indices too; cast anyway so a refusal is about the values."""
    return target.long()


@given(classification(), REDUCTIONS, SMOOTHING)
def test_cross_entropy_with_class_indices(case, reduction, smoothing) -> None:
    logits, target, ignore_index = case
    kwargs = ce_kwargs(reduction, smoothing, ignore_index)
    theirs = lambda: F.cross_entropy(logits, torch_targets(target), **kwargs)  # noqa: E731
    scale = softmax_scale(logits) * max(logits.shape[-1] if logits.dim() else 1, 1)
    for ours_fn in (losses.cross_entropy, losses.cross_entropy_composed):
        both = same_outcome(lambda fn=ours_fn: fn(logits, target, **kwargs), theirs, NO_CLASSES)
        if both:
            assert_close(*both, scale=scale)


@given(classification("wide"), REDUCTIONS, SMOOTHING)
def test_cross_entropy_gradients_with_class_indices(case, reduction, smoothing) -> None:
    logits, target, ignore_index = case
    kwargs = ce_kwargs(reduction, smoothing, ignore_index)
    if same_outcome(lambda: losses.cross_entropy(logits, target, **kwargs),
                    lambda: F.cross_entropy(logits, torch_targets(target), **kwargs), NO_CLASSES) is None:
        return
    expected = gradients(lambda t: F.cross_entropy(t, torch_targets(target), **kwargs), logits)[0]
    for ours_fn in (losses.cross_entropy, losses.cross_entropy_composed):
        assert_close(gradients(lambda t, fn=ours_fn: fn(t, target, **kwargs), logits)[0], expected,
                     scale=softmax_scale(logits))


@given(classification("wide"), REDUCTIONS, SMOOTHING)
def test_cross_entropy_grad_equals_autograd(case, reduction, smoothing) -> None:
    logits, target, ignore_index = case
    kwargs = ce_kwargs(reduction, smoothing, ignore_index)
    leaf = logits.clone().requires_grad_()

    def theirs():
        if logits.dim() != 2:  # cross_entropy_grad is documented for (N, C) only
            raise ValueError("not (N, C)")
        loss = F.cross_entropy(leaf, torch_targets(target), **kwargs)
        return torch.autograd.grad(loss.sum(), leaf)[0]

    both = same_outcome(lambda: losses.cross_entropy_grad(logits, target, **kwargs), theirs, NO_CLASSES)
    if both:
        assert_close(*both, scale=softmax_scale(logits))


@given(classification("wide", min_classes=1))
def test_cross_entropy_grad_from_stats_is_a_weighted_gradient(case) -> None:
    logits, target, _ = case
    if logits.dim() != 2 or not ((target >= 0) & (target < logits.shape[1])).all():
        return
    m = logits.amax(1)
    log_sum = (logits - m[:, None]).exp().sum(1).log()
    scale = torch.linspace(-1, 2, len(logits), dtype=torch.float64).to(logits.dtype)
    ours = losses.cross_entropy_grad_from_stats(logits, m, log_sum, target.long(), scale)
    leaf = logits.clone().requires_grad_()
    (expected,) = torch.autograd.grad(F.cross_entropy(leaf, target.long(), reduction="none"), leaf, scale)
    assert_close(ours, expected, scale=softmax_scale(logits))


@given(classification(), REDUCTIONS)
def test_nll_loss(case, reduction) -> None:
    log_probs, target, ignore_index = case
    both = same_outcome(lambda: losses.nll_loss(log_probs, target, ignore_index, reduction),
                        lambda: F.nll_loss(log_probs, torch_targets(target), ignore_index=ignore_index,
                                           reduction=reduction), NO_CLASSES)
    if both:
        assert_close(*both, scale=softmax_scale(log_probs))


@st.composite
def soft_targets(draw, magnitudes: str = "any"):
    """Logits (C,) or (N, C, d...) and probability targets of the same shape (not always normalised)."""
    dtype = draw(dtypes)
    shape = draw(shapes(1, 4))
    logits = draw(tensors(shape, dtype, magnitudes))
    probs = draw(tensors(shape, dtype, "normal")).abs()
    if draw(st.booleans()):
        probs = probs / probs.sum(1 if len(shape) > 1 else 0, keepdim=True).clamp_min(1e-3)
    return logits, probs


@given(soft_targets(), REDUCTIONS, SMOOTHING)
def test_cross_entropy_with_probability_targets(case, reduction, smoothing) -> None:
    logits, probs = case
    kwargs = dict(reduction=reduction, label_smoothing=smoothing)
    both = same_outcome(lambda: losses.cross_entropy(logits, probs, **kwargs),
                        lambda: F.cross_entropy(logits, probs, **kwargs), NO_CLASSES)
    if both:
        assert_close(*both, scale=10 * softmax_scale(logits) * max(probs.shape[-1], 1))


@given(soft_targets("wide"), REDUCTIONS, SMOOTHING)
def test_cross_entropy_gradients_with_probability_targets(case, reduction, smoothing) -> None:
    logits, probs = case
    kwargs = dict(reduction=reduction, label_smoothing=smoothing)
    if not finite(F.cross_entropy(logits, probs, **kwargs)) or 0 in logits.shape[1:2] or not logits.numel():
        return
    ours = gradients(lambda x, p: losses.cross_entropy(x, p, **kwargs), logits, probs)
    theirs = gradients(lambda x, p: F.cross_entropy(x, p, **kwargs), logits, probs)
    for a, b in zip(ours, theirs, strict=True):
        assert_close(a, b, scale=10 * softmax_scale(logits))
