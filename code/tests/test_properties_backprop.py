"""Differential property tests of fromscratch.backprop against torch's autograd and torch.nn.

Property: every hand-written forward equals torch's function, and every hand-written backward equals
what autograd computes for it, within property_helpers.TOLERANCE (absolute tolerance scaled by the
size of the products summed), or both raise. Values include ±inf and nan for the forwards; gradients
use finite inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from property_helpers import FLOAT_DTYPES, assert_close, budget, dtypes, same_outcome, tensors

from fromscratch import backprop as bp

SIDES = st.integers(0, 4)


def largest(t: torch.Tensor) -> float:
    finite_t = t[torch.isfinite(t)].double()
    return 1.0 + (float(finite_t.abs().max()) if finite_t.numel() else 0.0)


@st.composite
def linear_case(draw, magnitudes: str = "any"):
    dtype = draw(dtypes)
    n, n_in, n_out = draw(SIDES), draw(SIDES), draw(SIDES)
    return (draw(tensors((n, n_in), dtype, magnitudes)), draw(tensors((n_in, n_out), dtype, magnitudes)),
            draw(tensors((n_out,), dtype, magnitudes)), draw(tensors((n, n_out), dtype, "normal")))


@given(linear_case())
def test_linear_equals_torch(case) -> None:
    x, w, b, _ = case
    both = same_outcome(lambda: bp.linear(x, w, b), lambda: F.linear(x, w.T, b))
    if both:
        assert_close(*both, scale=max(w.shape[0], 1) * largest(x) * largest(w) + largest(b))


@given(linear_case("normal"))
def test_linear_backward_equals_autograd(case) -> None:
    x, w, b, grad_y = case
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    expected = torch.autograd.grad(F.linear(leaves[0], leaves[1].T, leaves[2]), leaves, grad_y)
    scale = max(x.shape + w.shape) * largest(x) * largest(w) * largest(grad_y)
    for ours, theirs in zip(bp.linear_backward(x, w, grad_y), expected, strict=True):
        assert_close(ours, theirs, scale=scale)


@given(st.lists(SIDES, max_size=3).flatmap(lambda s: tensors(tuple(s), torch.float64, "any")), dtypes)
def test_relu_and_its_backward(x, dtype) -> None:
    x = x.to(dtype)
    assert_close(bp.relu(x), torch.relu(x))
    leaf = x.clone().requires_grad_()
    grad_y = torch.linspace(-1, 2, x.numel(), dtype=torch.float64).reshape(x.shape).to(dtype)
    (expected,) = torch.autograd.grad(torch.relu(leaf), leaf, grad_y)
    assert_close(bp.relu_backward(x, grad_y), expected)


@st.composite
def regression(draw, magnitudes: str = "any"):
    dtype = draw(dtypes)
    shape = tuple(draw(st.lists(SIDES, min_size=0, max_size=3)))
    pred_shape, target_shape = (tuple(draw(st.sampled_from([side, 1])) for side in shape) for _ in range(2))
    return draw(tensors(pred_shape, dtype, magnitudes)), draw(tensors(target_shape, dtype, magnitudes))


@given(regression())
def test_mse_equals_torch(case) -> None:
    pred, target = case
    both = same_outcome(lambda: bp.mse(pred, target),
                        lambda: F.mse_loss(*torch.broadcast_tensors(pred, target)))
    if both:
        assert_close(*both)


@given(regression("normal"))
def test_mse_backward_equals_autograd(case) -> None:
    pred, target = case
    if not torch.broadcast_tensors(pred, target)[0].numel():
        return
    leaf = pred.clone().requires_grad_()
    (expected,) = torch.autograd.grad(F.mse_loss(*torch.broadcast_tensors(leaf, target)), leaf)
    assert_close(bp.mse_backward(pred, target), expected, scale=largest(pred) + largest(target))


@st.composite
def classification(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n, c = draw(st.integers(0, 5)), draw(st.integers(1, 4))
    logits = draw(tensors((n, c), dtype, "normal"))
    target = torch.tensor(draw(st.lists(st.one_of(st.integers(0, c - 1), st.just(-100)), min_size=n,
                                        max_size=n)), dtype=torch.long)
    return logits, target


@given(classification())
def test_cross_entropy_module_equals_torch(case) -> None:
    logits, target = case
    loss = bp.CrossEntropy()
    leaf = logits.clone().requires_grad_()
    expected = F.cross_entropy(leaf, target)
    assert_close(loss(logits, target), expected.detach())
    (expected_grad,) = torch.autograd.grad(expected, leaf)
    assert_close(loss.backward(), expected_grad)


@settings(max_examples=budget(0.5))
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5), st.integers(1, 6), st.integers(0, 2**16),
       st.sampled_from([torch.float32, torch.float64]), st.sampled_from(["mse", "cross-entropy"]))
def test_mlp_gradients_equal_autograd(n_in, n_hidden, n_out, n, seed, dtype, loss_name) -> None:
    model = bp.mlp(n_in, n_hidden, n_out, seed=seed, dtype=dtype)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=generator, dtype=dtype)
    if loss_name == "mse":
        loss, y = bp.MSE(), torch.randn(n, n_out, generator=generator, dtype=dtype)
    else:
        loss, y = bp.CrossEntropy(), torch.randint(0, n_out, (n,), generator=generator)
    rows = bp.compare_with_autograd(model, loss, x, y)
    limit = 1e-4 if dtype == torch.float32 else 1e-9
    assert all(math.isfinite(row["max_rel_error"]) and row["max_rel_error"] < limit for row in rows), rows


@given(st.integers(1, 4), st.integers(1, 4), st.floats(1e-3, 1.0), st.integers(0, 100))
def test_sgd_step_equals_torch_sgd(n_in, n_out, lr, seed) -> None:
    model = bp.mlp(n_in, 3, n_out, seed=seed, dtype=torch.float64)
    reference = bp.to_torch(model)
    x = torch.randn(5, n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    y = torch.randn(5, n_out, dtype=torch.float64)
    loss = bp.MSE()
    loss(model(x), y)
    model.backward(loss.backward())
    bp.sgd_step(model.parameters(), lr)
    optimizer = torch.optim.SGD(reference.parameters(), lr=lr)
    F.mse_loss(reference(x), y).backward()
    optimizer.step()
    for ours, theirs in zip(bp.to_torch(model).parameters(), reference.parameters(), strict=True):
        assert_close(ours.detach(), theirs.detach())


@given(st.integers(0, 30), st.integers(1, 8), st.integers(0, 3), st.integers(0, 100))
def test_batches_cover_every_row_once_per_epoch(n, batch_size, epochs, seed) -> None:
    parts = list(bp.batches(n, batch_size, epochs, seed))
    per_epoch = -(-n // batch_size)
    assert len(parts) == per_epoch * epochs
    for epoch in range(epochs):
        rows = parts[epoch * per_epoch:(epoch + 1) * per_epoch]
        assert sorted(torch.cat(rows).tolist() if rows else []) == list(range(n))
    assert [p.tolist() for p in parts] == [p.tolist() for p in bp.batches(n, batch_size, epochs, seed)]


@given(st.lists(SIDES, min_size=1, max_size=2).flatmap(lambda s: tensors(tuple(s), torch.float64, "normal")))
def test_finite_differences_match_autograd(x) -> None:
    def loss() -> torch.Tensor:
        return (torch.sin(x) * x).sum() + (x**2).sum() / 3

    leaf = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad((torch.sin(leaf) * leaf).sum() + (leaf**2).sum() / 3, leaf)
    torch.testing.assert_close(bp.finite_difference_grad(loss, x), expected, rtol=1e-6, atol=1e-6)


@given(st.integers(0, 6), st.integers(1, 4), st.sampled_from(FLOAT_DTYPES), st.data())
def test_accuracy_equals_argmax_agreement(n, c, dtype, data) -> None:
    logits = data.draw(tensors((n, c), dtype, "normal"))
    picks = data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    target = torch.tensor(picks, dtype=torch.long)
    expected = (logits.argmax(1) == target).double().mean().item()
    ours = bp.accuracy(logits, target)
    assert (math.isnan(expected) and math.isnan(ours)) or math.isclose(ours, expected, rel_tol=1e-6)


@given(st.lists(SIDES, max_size=2).flatmap(lambda s: tensors(tuple(s), torch.float64, "normal")),
       st.floats(-1e-3, 1e-3))
def test_max_relative_error_is_scale_free(reference, noise) -> None:
    if not reference.numel():
        return
    ours = reference + noise
    error = bp.max_relative_error(ours, reference)
    scale = float(reference.abs().max())
    assert math.isclose(error, abs(noise) / (scale if scale > 0 else 1.0), rel_tol=1e-6, abs_tol=1e-12)
