"""fromscratch.backprop: hand-written gradients against autograd and finite differences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fromscratch import backprop as bp


def data(n: int = 32, n_in: int = 6, n_out: int = 4, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g, dtype=dtype)
    y = torch.randint(0, n_out, (n,), generator=g)
    return x, y, F.one_hot(y, n_out).to(dtype)


def test_functions_match_autograd() -> None:
    x, _, _ = data()
    w = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    xl = x.clone().requires_grad_()
    target = torch.randn(32, 3, dtype=torch.float64)
    hidden = bp.linear(xl, w, b)
    out = bp.relu(hidden)
    loss = bp.mse(out, target)
    torch.testing.assert_close(loss, F.mse_loss(F.relu(xl @ w + b), target))
    loss.backward()
    with torch.no_grad():
        g_out = bp.mse_backward(out, target)
        g_hidden = bp.relu_backward(hidden, g_out)
        g_x, g_w, g_b = bp.linear_backward(x, w, g_hidden)
    for ours, theirs in ((g_x, xl.grad), (g_w, w.grad), (g_b, b.grad)):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
def test_every_gradient_matches_autograd(dtype, tol, loss_name) -> None:
    x, y, one_hot = data(dtype=dtype)
    model = bp.mlp(6, 5, 4, seed=1, dtype=dtype)
    loss_fn, target = (bp.MSE(), one_hot) if loss_name == "mse" else (bp.CrossEntropy(), y)
    rows = bp.compare_with_autograd(model, loss_fn, x, target)
    assert [r["tensor"] for r in rows] == ["loss", "0.weight", "0.bias", "2.weight", "2.bias", "input"]
    for row in rows:
        assert row["max_rel_error"] < tol, row


def test_gradients_match_finite_differences() -> None:
    x, y, _ = data(n=8, n_in=3, n_out=3)
    model = bp.mlp(3, 4, 3, seed=2, dtype=torch.float64)
    loss_fn = bp.CrossEntropy()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    for p in model.parameters():
        numeric = bp.finite_difference_grad(lambda: loss_fn(model(x), y), p.data)
        assert bp.max_relative_error(p.grad, numeric) < 1e-7, p.name
    numeric_x = bp.finite_difference_grad(lambda: loss_fn(model(x), y), x)
    loss_fn(model(x), y)
    assert bp.max_relative_error(model.backward(loss_fn.backward()), numeric_x) < 1e-7


def test_to_torch_computes_the_same_function() -> None:
    x, _, _ = data()
    model = bp.mlp(6, 5, 4, seed=3, dtype=torch.float64)
    torch.testing.assert_close(bp.to_torch(model)(x), model(x))


@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
def test_training_by_hand_follows_autograd_step_for_step(loss_name) -> None:
    x, y, one_hot = data(n=64, dtype=torch.float64)
    model = bp.mlp(6, 8, 4, seed=4, dtype=torch.float64)
    torch_model = bp.to_torch(model)
    if loss_name == "mse":
        ours = bp.train_by_hand(model, bp.MSE(), x, one_hot, lr=0.1, epochs=3, batch_size=16)
        theirs = bp.train_with_autograd(torch_model, F.mse_loss, x, one_hot, lr=0.1, epochs=3, batch_size=16)
    else:
        ours = bp.train_by_hand(model, bp.CrossEntropy(), x, y, lr=0.1, epochs=3, batch_size=16)
        theirs = bp.train_with_autograd(torch_model, F.cross_entropy, x, y, lr=0.1, epochs=3, batch_size=16)
    assert len(ours) == 12 and ours[-1] < ours[0]
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(theirs), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(bp.to_torch(model)[0].weight, torch_model[0].weight)


def test_batches_cover_every_row_once_per_epoch() -> None:
    parts = list(bp.batches(10, 4, epochs=2, seed=0))
    assert [len(p) for p in parts] == [4, 4, 2, 4, 4, 2]
    assert sorted(torch.cat(parts[:3]).tolist()) == list(range(10))


def test_bad_use_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match="takes"):
        bp.Linear(3, 2)(torch.randn(4, 5))
    with pytest.raises(RuntimeError, match="before a forward"):
        bp.ReLU().backward(torch.ones(2))
    with pytest.raises(ValueError, match="one-hot"):
        bp.MSE()(torch.randn(4, 3), torch.randn(4))
    with pytest.raises(TypeError, match="knows Linear"):
        bp.to_torch(bp.Sequential(bp.MSE()))


def test_accuracy() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    assert bp.accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- issue 13 regressions
def test_cross_entropy_ignores_rows_like_torch_or_refuses_extra_dimensions() -> None:
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, -100, 2, 1, -100])
    loss = bp.CrossEntropy()
    torch.testing.assert_close(loss(logits.detach(), target), F.cross_entropy(logits, target))
    F.cross_entropy(logits, target).backward()
    torch.testing.assert_close(loss.backward(), logits.grad)
    none_kept = bp.CrossEntropy()
    assert torch.isnan(none_kept(logits.detach(), torch.full((5,), -100)))
    assert torch.equal(none_kept.backward(), torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"logits \(N, C\)"):
        bp.CrossEntropy()(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


def test_compare_with_autograd_at_a_loss_of_zero() -> None:
    model = bp.mlp(3, 4, 2, dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    target = model(x).detach()
    rows = bp.compare_with_autograd(model, bp.MSE(), x, target)
    assert rows[0]["tensor"] == "loss" and rows[0]["max_rel_error"] == 0.0
    assert all(row["max_abs_error"] < 1e-12 for row in rows)
