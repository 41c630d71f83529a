"""Property tests of fromscratch.nn's optimizers: the same trajectory as torch.optim, or the same refusal.

Property: for any hyperparameters drawn below (a quarter of the draws with one invalid value), our
optimizer and torch's either both refuse with the same ValueError message, or move the parameters of
the same model, on the same data, through the same values within 1e-6 for N steps, in float64 and
float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from property_helpers import budget

from fromscratch import nn

DTYPES = st.sampled_from([torch.float64, torch.float32])


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


# one hyperparameter in four draws made invalid, so that most examples train and the rest check refusals
SGD_BAD = {"lr": -0.1, "momentum": -0.5, "weight_decay": -0.01, "nesterov": None}
ADAM_BAD = {"lr": -1e-3, "eps": -1e-8, "beta1": 1.0, "beta2": -0.1, "weight_decay": -0.1}


def maybe_bad(bad: dict) -> st.SearchStrategy:
    return st.sampled_from([None] * (3 * len(bad)) + list(bad))


@settings(max_examples=budget(1.0))
@given(st.floats(0.0, 0.5), st.one_of(st.just(0.0), st.floats(0.0, 0.99)),
       st.one_of(st.just(0.0), st.floats(0.0, 1.0)), st.sampled_from([0.0, 0.01, 0.3]), st.booleans(),
       maybe_bad(SGD_BAD), DTYPES, st.integers(0, 1000), st.integers(1, 6))
def test_sgd_equals_torch(lr, momentum, dampening, weight_decay, nesterov, bad, dtype, seed, steps) -> None:
    if nesterov:  # a valid Nesterov case: momentum and no dampening
        momentum, dampening = max(momentum, 0.1), 0.0
    options = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
               "nesterov": nesterov}
    if bad == "nesterov":
        options |= {"nesterov": True, "momentum": 0.0}
    elif bad is not None:
        options[bad] = SGD_BAD[bad]
    same_trajectory_or_refusal("SGD", options, dtype, seed, steps)


@settings(max_examples=budget(1.0))
@given(st.sampled_from(["Adam", "AdamW"]), st.floats(0.0, 0.05), st.floats(0.0, 0.99), st.floats(0.0, 0.9999),
       st.sampled_from([1e-8, 1e-3, 0.0]), st.sampled_from([0.0, 0.01, 0.5]), maybe_bad(ADAM_BAD), DTYPES,
       st.integers(0, 1000), st.integers(1, 6))
def test_adam_equals_torch(name, lr, beta1, beta2, eps, weight_decay, bad, dtype, seed, steps) -> None:
    values = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay}
    if bad is not None:
        values[bad] = ADAM_BAD[bad]
    options = {"lr": values["lr"], "betas": (values["beta1"], values["beta2"]), "eps": values["eps"],
               "weight_decay": values["weight_decay"]}
    same_trajectory_or_refusal(name, options, dtype, seed, steps)
