"""fromscratch.losses against torch: values and gradients, float32 and float64, extreme logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fromscratch import losses

DTYPES = [torch.float64, torch.float32]
TOL = {torch.float64: {"rtol": 1e-6, "atol": 1e-6}, torch.float32: {"rtol": 1e-5, "atol": 1e-6}}


def close(ours: torch.Tensor, theirs: torch.Tensor, dtype: torch.dtype) -> None:
    """Same dtype, same non-finite pattern, and values within the issue's tolerance."""
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, equal_nan=True, **TOL[dtype])


def extreme_logits(dtype: torch.dtype) -> torch.Tensor:
    """Rows where the naive formulas overflow or lose everything: ±1e4, all equal, one huge."""
    c = 7
    rows = [torch.full((c,), 1e4), torch.full((c,), -1e4), torch.zeros(c), torch.full((c,), 3.5),
            torch.tensor([0, 0, 1e4, 0, 0, 0, 0]), torch.tensor([-1e4, 1e4, 0, -1e4, 1e4, 5, 1]),
            torch.tensor([1000.0, 999, 998, 1001, 0, -5, 1000]), torch.linspace(-1e4, 1e4, c)]
    return torch.stack(rows).to(dtype)


def random_logits(dtype: torch.dtype, shape=(37, 11), scale: float = 4.0, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


def targets(n: int, c: int, seed: int = 1, ignore_every: int = 0) -> torch.Tensor:
    t = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))
    if ignore_every:
        t[::ignore_every] = -100
    return t


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [random_logits, extreme_logits], ids=["random", "extreme"])
def test_softmax_family_matches_torch(dtype, make) -> None:
    x = make(dtype)
    for dim in (-1, 0):
        close(losses.softmax(x, dim), F.softmax(x, dim), dtype)
        close(losses.log_softmax(x, dim), F.log_softmax(x, dim), dtype)
        close(losses.logsumexp(x, dim), torch.logsumexp(x, dim), dtype)
    close(losses.logsumexp(x, 1, keepdim=True), torch.logsumexp(x, 1, keepdim=True), dtype)
    assert torch.isfinite(losses.log_softmax(x)).all() and torch.isfinite(losses.softmax(x)).all()


def test_naive_softmax_overflows_where_ours_does_not() -> None:
    x = extreme_logits(torch.float32)
    naive = x.exp() / x.exp().sum(1, keepdim=True)
    assert torch.isnan(naive).any()
    assert torch.isfinite(losses.softmax(x)).all()
    torch.testing.assert_close(losses.softmax(x).sum(1), torch.ones(len(x)))


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_logsumexp_of_infinite_rows_like_torch(value) -> None:
    x = torch.tensor([[value, value, value], [value, 0.0, 1.0], [1.0, 2.0, 3.0]])
    torch.testing.assert_close(losses.logsumexp(x, 1), torch.logsumexp(x, 1), equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_every", [0, 3])
def test_nll_loss_matches_torch(dtype, reduction, ignore_every) -> None:
    log_probs = F.log_softmax(random_logits(dtype), 1)
    t = targets(len(log_probs), log_probs.shape[1], ignore_every=ignore_every)
    close(losses.nll_loss(log_probs, t, reduction=reduction), F.nll_loss(log_probs, t, reduction=reduction),
          dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("make", [random_logits, extreme_logits], ids=["random", "extreme"])
@pytest.mark.parametrize("fn", [losses.cross_entropy, losses.cross_entropy_composed],
                         ids=["fused", "composed"])
def test_cross_entropy_matches_torch(dtype, reduction, smoothing, make, fn) -> None:
    x = make(dtype)
    t = targets(len(x), x.shape[1], ignore_every=3)
    kwargs = {"reduction": reduction, "label_smoothing": smoothing}
    close(fn(x, t, **kwargs), F.cross_entropy(x, t, **kwargs), dtype)
    kept = t.clamp(min=0)  # class 2 plays ignore_index now
    close(fn(x, kept, ignore_index=2, **kwargs), F.cross_entropy(x, kept, ignore_index=2, **kwargs), dtype)


@pytest.mark.parametrize("ignore_index", [-100, 0, 4])
def test_ignore_index_is_any_class_value(ignore_index) -> None:
    x = random_logits(torch.float64)
    t = targets(len(x), x.shape[1])
    for reduction in ("mean", "sum", "none"):
        kwargs = {"ignore_index": ignore_index, "reduction": reduction, "label_smoothing": 0.2}
        close(losses.cross_entropy(x, t, **kwargs), F.cross_entropy(x, t, **kwargs), torch.float64)


def test_all_rows_ignored_gives_nan_mean_like_torch() -> None:
    x = random_logits(torch.float64, (4, 5))
    t = torch.full((4,), -100)
    for smoothing in (0.0, 0.3):
        ours = losses.cross_entropy(x, t, label_smoothing=smoothing)
        assert torch.isnan(ours) and torch.isnan(F.cross_entropy(x, t, label_smoothing=smoothing))
    assert losses.cross_entropy(x, t, reduction="sum") == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_extra_dimensions_unbatched_and_int32_targets(dtype) -> None:
    x = random_logits(dtype, (3, 5, 4, 2))
    t = torch.randint(0, 5, (3, 4, 2), generator=torch.Generator().manual_seed(3))
    t[0, 1, 1] = -100
    for reduction in ("mean", "none"):
        expected = F.cross_entropy(x, t, reduction=reduction)
        close(losses.cross_entropy(x, t, reduction=reduction), expected, dtype)
        close(losses.nll_loss(x, t, reduction=reduction), F.nll_loss(x, t, reduction=reduction), dtype)
    v = random_logits(dtype, (6,))
    close(losses.cross_entropy(v, torch.tensor(2)), F.cross_entropy(v, torch.tensor(2)), dtype)
    x2, t2 = random_logits(dtype), targets(37, 11)
    close(losses.cross_entropy(x2, t2.int()), F.cross_entropy(x2, t2), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_probability_targets_match_torch(dtype, smoothing) -> None:
    x = random_logits(dtype)
    p = F.softmax(random_logits(dtype, seed=5), 1)
    for reduction in ("mean", "sum", "none"):
        kwargs = {"reduction": reduction, "label_smoothing": smoothing}
        close(losses.cross_entropy(x, p, **kwargs), F.cross_entropy(x, p, **kwargs), dtype)


def test_fused_cross_entropy_spans_several_blocks(monkeypatch) -> None:
    monkeypatch.setattr(losses, "CHUNK_BYTES", 8 * 13 * 3)  # three rows per block, ragged last block
    x = random_logits(torch.float64, (20, 13)).requires_grad_()
    t = targets(20, 13, ignore_every=4)
    ours = losses.cross_entropy(x, t, label_smoothing=0.1)
    (grad,) = torch.autograd.grad(ours, x)
    theirs = F.cross_entropy(x, t, label_smoothing=0.1)
    (grad_torch,) = torch.autograd.grad(theirs, x)
    close(ours.detach(), theirs.detach(), torch.float64)
    close(grad, grad_torch, torch.float64)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [random_logits, extreme_logits], ids=["random", "extreme"])
def test_softmax_and_log_softmax_backward_match_autograd(dtype, make) -> None:
    x = make(dtype).requires_grad_()
    g = torch.randn(x.shape, dtype=dtype, generator=torch.Generator().manual_seed(7))
    (expected,) = torch.autograd.grad(F.softmax(x, 1), x, g)
    close(losses.softmax_backward(losses.softmax(x.detach(), 1), g, 1), expected, dtype)
    (expected,) = torch.autograd.grad(F.log_softmax(x, 1), x, g)
    close(losses.log_softmax_backward(losses.log_softmax(x.detach(), 1), g, 1), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("make", [random_logits, extreme_logits], ids=["random", "extreme"])
def test_cross_entropy_gradients_match_autograd(dtype, reduction, smoothing, make) -> None:
    x = make(dtype)
    t = targets(len(x), x.shape[1], ignore_every=3)
    kwargs = {"reduction": reduction, "label_smoothing": smoothing}
    ours_in, torch_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, theirs = losses.cross_entropy(ours_in, t, **kwargs), F.cross_entropy(torch_in, t, **kwargs)
    g = torch.randn(ours.shape, dtype=dtype, generator=torch.Generator().manual_seed(2)) + 2
    ours.backward(g)
    theirs.backward(g)
    close(ours_in.grad, torch_in.grad, dtype)
    # the closed form softmax - one_hot, with no autograd at all
    leaf = x.clone().requires_grad_()
    F.cross_entropy(leaf, t, **kwargs).sum().backward()
    close(losses.cross_entropy_grad(x, t, **kwargs), leaf.grad, dtype)


def test_fused_cross_entropy_passes_gradcheck() -> None:
    x = random_logits(torch.float64, (6, 5), scale=2.0).requires_grad_()
    t = torch.tensor([0, 4, -100, 2, 2, 1])
    assert torch.autograd.gradcheck(lambda z: losses.cross_entropy(z, t, label_smoothing=0.2), (x,))
    assert torch.autograd.gradgradcheck(lambda z: losses.log_softmax(z, 1), (x,))


def test_gradients_on_cuda_match_cpu_when_available() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = random_logits(torch.float32, (64, 100)).cuda().requires_grad_()
    t = targets(64, 100, ignore_every=5).cuda()
    loss = losses.cross_entropy(x, t, label_smoothing=0.1)
    loss.backward()
    leaf = x.detach().clone().requires_grad_()
    F.cross_entropy(leaf, t, label_smoothing=0.1).backward()
    close(x.grad, leaf.grad, torch.float32)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors() -> None:
    x = random_logits(torch.float32, (4, 3))
    with pytest.raises(ValueError, match="reduction"):
        losses.cross_entropy(x, torch.tensor([0, 1, 2, 0]), reduction="avg")
    with pytest.raises(ValueError, match="class indices"):
        losses.cross_entropy(x, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.cross_entropy(x, torch.tensor([0, 1, 2, 0]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="target"):
        losses.cross_entropy(x, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="floating-point"):
        losses.softmax(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="integer class indices"):
        losses.nll_loss(x, torch.tensor([0.0, 1.0, 2.0, 0.0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_logits_with_minus_inf_like_torch(dtype) -> None:
    x = random_logits(dtype, (6, 5))
    x[:, 3] = float("-inf")  # a masked class, as attention and vocabulary masks do
    x[2] = float("-inf")  # a fully masked row, ignored by its target
    t = torch.tensor([0, 4, -100, 2, 1, 0])
    for reduction in ("mean", "none"):
        expected = F.cross_entropy(x, t, reduction=reduction)
        close(losses.cross_entropy(x, t, reduction=reduction), expected, dtype)
    ours_in, torch_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    losses.cross_entropy(ours_in, t).backward()
    F.cross_entropy(torch_in, t).backward()
    close(ours_in.grad, torch_in.grad, dtype)
    close(losses.log_softmax(x[[0, 1]], 1), F.log_softmax(x[[0, 1]], 1), dtype)


def test_benchmark_reports_the_target_ratio_and_correct_losses(monkeypatch) -> None:
    """Structure only: the summary names the (4096, 1000) float32 ratio; speed is never asserted."""
    from fromscratch.benchmarks import losses as benchmark

    monkeypatch.setattr(benchmark, "TARGET_SIZE", (64, 10))
    result = benchmark.run(sizes=[(32, 7)], rounds=1)
    assert [(r["batch"], r["classes"], r["threads"]) for r in result["rows"]][-1] == (64, 10, 1)
    assert result["summary"]["ratio_forward_1thread_64x10_float32_cpu"] > 0
    assert result["summary"]["ratio_forward_64x10_float32_cpu"] > 0
    assert result["summary"]["max_loss_rel_error"] < 1e-5
    assert all(r["ours_peak_bytes"] > 0 and r["torch_peak_bytes"] > 0 for r in result["rows"])


# ----------------------------------------------------------------------------- issue 13 regressions
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_probability_targets_on_extra_dimensions_average_over_every_position(reduction) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    p = F.softmax(torch.randn(2, 4, 3, dtype=torch.float64, generator=generator), 1)
    ours = losses.cross_entropy(x, p, reduction=reduction)
    theirs = F.cross_entropy(x, p, reduction=reduction)
    torch.testing.assert_close(ours, theirs)
    (grad_ours,) = torch.autograd.grad(ours.sum(), x)
    (grad_theirs,) = torch.autograd.grad(theirs.sum(), x)
    torch.testing.assert_close(grad_ours, grad_theirs)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_fused_cross_entropy_supports_double_backward(smoothing) -> None:
    """A gradient penalty: the gradient of |dL/dx|^2 needs the second derivative of the loss."""
    target = torch.tensor([0, 3, 2, -100, 1])

    def penalised_grad(fn):
        x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        x.requires_grad_()
        loss = fn(x, target, label_smoothing=smoothing)
        (grad,) = torch.autograd.grad(loss, x, create_graph=True)
        (loss + 10 * (grad**2).sum()).backward()
        return x.grad

    torch.testing.assert_close(penalised_grad(losses.cross_entropy), penalised_grad(F.cross_entropy))


def test_cross_entropy_grad_is_zero_when_every_target_is_ignored() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    target = torch.full((3,), -100)
    F.cross_entropy(x, target).backward()
    assert torch.equal(losses.cross_entropy_grad(x.detach(), target), x.grad)


def test_composed_cross_entropy_on_unbatched_input() -> None:
    x = torch.randn(5, dtype=torch.float64)
    for smoothing in (0.0, 0.3):
        ours = losses.cross_entropy_composed(x, torch.tensor(2), label_smoothing=smoothing)
        torch.testing.assert_close(ours, F.cross_entropy(x, torch.tensor(2), label_smoothing=smoothing))
