"""Property tests of fromscratch.nn's optimizers: the same trajectory as torch.optim, or the same refusal.

Property: for any hyperparameters drawn below (including invalid ones), our optimizer and torch's
either both refuse with the same ValueError message, or move the parameters of the same model, on
the same data, through the same values within 1e-6 for N steps, in float64 and float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from property_helpers import budget

from fromscratch import nn

DTYPES = st.sampled_from([torch.float64, torch.float32])
RATES = st.one_of(st.floats(0.0, 0.5), st.sampled_from([-0.1, 0.0]))
FRACTIONS = st.one_of(st.floats(0.0, 0.99), st.sampled_from([0.0, -0.5, 1.0]))


def run(make_optimizer, dtype: torch.dtype, seed: int, steps: int) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4, dtype=dtype), nn.ReLU(), nn.Linear(4, 2, dtype=dtype))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, generator=generator, dtype=dtype)
    y = torch.randn(8, 2, generator=generator, dtype=dtype)
    optimizer = make_optimizer(model.parameters())
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()
        history.append(torch.cat([p.detach().flatten().clone() for p in model.parameters()]))
    return history


def same_trajectory_or_refusal(name: str, options: dict, dtype: torch.dtype, seed: int, steps: int) -> None:
    outcomes = []
    for optimizer_class in (getattr(nn, name), getattr(torch.optim, name)):
        def make(params, cls=optimizer_class):
            return cls(params, **options)

        try:
            outcomes.append(run(make, dtype, seed, steps))
        except ValueError as error:
            outcomes.append(str(error))
    ours, theirs = outcomes
    assert type(ours) is type(theirs), (ours, theirs)
    if isinstance(ours, str):
        assert ours == theirs
        return
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, equal_nan=True)


@settings(max_examples=budget(1.0))
@given(RATES, FRACTIONS, FRACTIONS, st.sampled_from([0.0, 0.01, 0.3, -0.01]), st.booleans(), DTYPES,
       st.integers(0, 1000), st.integers(1, 6))
def test_sgd_equals_torch(lr, momentum, dampening, weight_decay, nesterov, dtype, seed, steps) -> None:
    options = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
               "nesterov": nesterov}
    same_trajectory_or_refusal("SGD", options, dtype, seed, steps)


@settings(max_examples=budget(1.0))
@given(st.sampled_from(["Adam", "AdamW"]), RATES.map(lambda r: r / 10), FRACTIONS,
       st.one_of(st.floats(0.0, 0.9999), st.sampled_from([1.0, -0.1])),
       st.sampled_from([1e-8, 1e-3, 0.0, -1e-8]), st.sampled_from([0.0, 0.01, 0.5, -0.1]), DTYPES,
       st.integers(0, 1000), st.integers(1, 6))
def test_adam_equals_torch(name, lr, beta1, beta2, eps, weight_decay, dtype, seed, steps) -> None:
    options = {"lr": lr, "betas": (beta1, beta2), "eps": eps, "weight_decay": weight_decay}
    same_trajectory_or_refusal(name, options, dtype, seed, steps)
