"""Norms and distances against torch.linalg, torch.nn.functional and torch.cdist."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fromscratch import norms


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("p", [1, 2, 3, 1.5, math.inf])
@pytest.mark.parametrize("dim", [None, 0, 1])
def test_vector_norm(p: float, dim: int | None) -> None:
    x = rand(7, 5)
    expected = torch.linalg.vector_norm(x, ord=p, dim=dim)
    torch.testing.assert_close(norms.vector_norm(x, p=p, dim=dim), expected)


def test_vector_norm_rejects_p_below_one_and_integers() -> None:
    with pytest.raises(ValueError, match="p must be >= 1"):
        norms.vector_norm(rand(3), p=0.5)
    with pytest.raises(TypeError, match="floating-point"):
        norms.vector_norm(torch.arange(3))


@pytest.mark.parametrize("p", [1, 2, 4, math.inf])
def test_unit_ball_points_have_norm_one(p: float) -> None:
    points = norms.unit_ball_boundary(p, points=50)
    lengths = torch.linalg.vector_norm(points, ord=p, dim=1)
    torch.testing.assert_close(lengths, torch.ones(50, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (1, 5), (5, 1), (30, 30)])
def test_matrix_norms(shape: tuple[int, int]) -> None:
    a = rand(*shape, seed=2)
    torch.testing.assert_close(norms.frobenius_norm(a), torch.linalg.matrix_norm(a, ord="fro"))
    torch.testing.assert_close(norms.matrix_norm_1(a), torch.linalg.matrix_norm(a, ord=1))
    torch.testing.assert_close(norms.matrix_norm_inf(a), torch.linalg.matrix_norm(a, ord=math.inf))
    torch.testing.assert_close(norms.spectral_norm(a, iterations=2000, tol=1e-14),
                               torch.linalg.matrix_norm(a, ord=2), rtol=1e-6, atol=1e-8)


def test_power_iteration_converges_and_handles_zero() -> None:
    a = torch.diag(torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64))
    sigma, history = norms.power_iteration(a, iterations=200)
    assert abs(float(sigma) - 3.0) < 1e-6 and len(history) < 200
    assert all(h <= 3.0 + 1e-12 for h in history)  # |a v| never overshoots sigma_max
    zero_sigma, _ = norms.power_iteration(torch.zeros(3, 4))
    assert float(zero_sigma) == 0.0


def test_losses_and_cosine_match_torch() -> None:
    p, t = rand(4, 3, seed=1), rand(4, 3, seed=2)
    torch.testing.assert_close(norms.mse(p, t), F.mse_loss(p, t))
    torch.testing.assert_close(norms.mae(p, t), F.l1_loss(p, t))
    torch.testing.assert_close(norms.cosine_similarity(p, t), F.cosine_similarity(p, t, dim=-1))
    torch.testing.assert_close(norms.cosine_similarity(p, t, dim=0), F.cosine_similarity(p, t, dim=0))


def test_clip_grad_norm_matches_torch() -> None:
    def model_with_grads() -> torch.nn.Module:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 2))
        model(torch.randn(3, 5)).pow(2).sum().backward()
        return model

    ours, theirs = model_with_grads(), model_with_grads()
    total = norms.clip_grad_norm(ours.parameters(), max_norm=0.1)
    expected = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm=0.1)
    torch.testing.assert_close(total, expected)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)


@pytest.mark.parametrize("method", norms.DISTANCE_METHODS)
@pytest.mark.parametrize(("n", "m", "d"), [(1, 1, 1), (7, 5, 3), (20, 30, 16), (1, 9, 4)])
def test_distances_equal_cdist(method: str, n: int, m: int, d: int) -> None:
    x, y = rand(n, d, seed=3), rand(m, d, seed=4)
    expected = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    torch.testing.assert_close(norms.pairwise_distances(x, y, method=method), expected)
    torch.testing.assert_close(norms.pairwise_distances(x, y, method=method, squared=True), expected**2)


def test_gram_trick_cancels_and_gram_safe_fixes_it() -> None:
    """Points 1e-3 apart, 100 away from the origin, in float32: the plain Gram trick fails."""
    centre = 100.0 * torch.ones(1, 8, dtype=torch.float64)
    x64 = centre + 1e-3 * rand(40, 8, seed=5)
    y64 = centre + 1e-3 * rand(30, 8, seed=6)
    truth = torch.cdist(x64, y64, compute_mode="donot_use_mm_for_euclid_dist")
    x, y = x64.float(), y64.float()

    def worst_relative_error(method: str) -> float:
        return float(((norms.pairwise_distances(x, y, method).double() - truth).abs() / truth).max())

    assert worst_relative_error("gram") > 0.1
    assert worst_relative_error("gram_safe") < 1e-2
    assert worst_relative_error("broadcast") < 1e-2


def test_gram_safe_gives_exact_zero_self_distance() -> None:
    x = 1000.0 + rand(10, 4, dtype=torch.float32)
    assert float(norms.pairwise_distances(x, x, "gram_safe").diagonal().abs().max()) == 0.0


def test_distance_errors_and_memory_formula() -> None:
    with pytest.raises(ValueError, match="same number of features"):
        norms.pairwise_distances(rand(3, 2), rand(3, 4))
    with pytest.raises(ValueError, match="unknown method"):
        norms.pairwise_distances(rand(3, 2), rand(3, 2), method="cosine")
    assert norms.distance_memory_bytes(10, 20, 3, "broadcast") == (2 * 600 + 200) * 4
    assert norms.distance_memory_bytes(10, 20, 3, "gram") < norms.distance_memory_bytes(10, 20, 3, "einsum")


# --- issue 13 regressions ----------------------------------------------------------------------

def test_mse_and_mae_average_over_the_broadcast_size() -> None:
    a, b = torch.randn(4, 1, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64)
    expanded = torch.broadcast_tensors(a, b)
    torch.testing.assert_close(norms.mse(a, b), F.mse_loss(*expanded))
    torch.testing.assert_close(norms.mae(a, b), F.l1_loss(*expanded))
    with pytest.raises(ValueError, match="do not broadcast"):
        norms.mse(torch.zeros(3), torch.zeros(4))


def test_clip_grad_norm_on_a_single_tensor_like_torch() -> None:
    ours, theirs = (torch.nn.Parameter(torch.ones(3)) for _ in range(2))
    ours.grad, theirs.grad = torch.full((3,), 10.0), torch.full((3,), 10.0)
    torch.testing.assert_close(norms.clip_grad_norm(ours, 1.0), torch.nn.utils.clip_grad_norm_(theirs, 1.0))
    torch.testing.assert_close(ours.grad, theirs.grad)
    assert ours.grad.norm() < 1.0 + 1e-5


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf])
def test_vector_norm_gradient_at_zero_is_zero_like_torch(p: float) -> None:
    ours, theirs = torch.zeros(2, 3, requires_grad=True), torch.zeros(2, 3, requires_grad=True)
    norms.vector_norm(ours, p, dim=1).sum().backward()
    torch.linalg.vector_norm(theirs, p, dim=1).sum().backward()
    assert torch.equal(ours.grad, theirs.grad)


def test_mse_and_cosine_have_finite_gradients_at_zero() -> None:
    x = torch.zeros(4, requires_grad=True)
    norms.mse(x, torch.zeros(4)).backward()
    assert torch.equal(x.grad, torch.zeros(4))
    y = torch.zeros(4, requires_grad=True)
    norms.cosine_similarity(y, torch.ones(4), dim=0).backward()
    expected = torch.zeros(4, requires_grad=True)
    F.cosine_similarity(expected, torch.ones(4), dim=0).backward()
    torch.testing.assert_close(y.grad, expected.grad)
