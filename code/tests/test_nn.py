"""fromscratch.nn: Module registration and printing against torch.nn, optimizers against torch.optim."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn as tnn

from fromscratch import backprop, nn


def pair(seed: int = 0, dtype=torch.float32):
    """Our MLP and torch's, built from the same seed: same names, same initial weights."""
    torch.manual_seed(seed)
    ours = nn.Sequential(nn.Linear(5, 7, dtype=dtype), nn.ReLU(), nn.Linear(7, 3, dtype=dtype))
    torch.manual_seed(seed)
    theirs = tnn.Sequential(tnn.Linear(5, 7, dtype=dtype), tnn.ReLU(), tnn.Linear(7, 3, dtype=dtype))
    return ours, theirs


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
        self.scale = nn.Parameter(torch.ones(1))
        self.head = nn.Linear(6, 2)
        self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2, bias=False)])

    def forward(self, x):
        x = self.head(self.body(x) * self.scale)
        for block in self.blocks:
            x = block(x)
        return x


class TorchNet(tnn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = tnn.Sequential(tnn.Linear(4, 6), tnn.ReLU())
        self.scale = tnn.Parameter(torch.ones(1))
        self.head = tnn.Linear(6, 2)
        self.blocks = tnn.ModuleList([tnn.Linear(2, 2), tnn.Linear(2, 2, bias=False)])


def test_parameter_is_an_autograd_leaf_that_shares_storage() -> None:
    data = torch.randn(3)
    p = nn.Parameter(data)
    assert isinstance(p, torch.Tensor) and p.requires_grad and p.is_leaf
    assert p.data_ptr() == data.data_ptr()
    assert type(p * 2) is torch.Tensor  # operations give plain tensors, as torch.nn.Parameter
    (p * p).sum().backward()
    torch.testing.assert_close(p.grad, 2 * data)
    twin = copy.deepcopy(p)
    assert isinstance(twin, nn.Parameter) and twin.data_ptr() != p.data_ptr() and torch.equal(twin, p)
    assert isinstance(pickle.loads(pickle.dumps(p)), nn.Parameter)
    assert not nn.Parameter(data, requires_grad=False).requires_grad
    with pytest.raises(TypeError, match="wraps a tensor"):
        nn.Parameter([1.0, 2.0])


def test_same_names_shapes_and_initial_weights_as_torch() -> None:
    ours, theirs = pair()
    names = [(n, tuple(p.shape)) for n, p in ours.named_parameters()]
    assert names == [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)  # Linear draws its weights as torch does
    x = torch.randn(9, 5)
    assert torch.equal(ours(x), theirs(x))
    assert repr(ours) == repr(theirs)


def test_nested_names_follow_insertion_order_as_torch() -> None:
    ours, theirs = Net(), TorchNet()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert len(list(ours.modules())) == len(list(theirs.modules()))
    assert repr(ours).replace("Net(", "X(") == repr(theirs).replace("TorchNet(", "X(")
    assert ours(torch.randn(3, 4)).shape == (3, 2)


def test_shared_parameters_count_once_and_reassignment_moves_the_name() -> None:
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2
    layer = nn.Linear(2, 2)
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    with pytest.raises(TypeError, match="wrap it in Parameter"):
        layer.weight = torch.zeros(2, 2)
    layer.extra = nn.Parameter(torch.zeros(1))
    del layer.extra
    assert [n for n, _ in layer.named_parameters()] == ["weight"]


def test_forgetting_super_init_is_a_clear_error() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            self.w = nn.Parameter(torch.zeros(1))

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Broken()

    class Empty(nn.Module):
        def __init__(self) -> None:
            pass

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\) first in Empty"):
        nn.Sequential(Empty())


def test_train_eval_zero_grad_to_and_state_dict() -> None:
    model = Net()
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model(torch.randn(4, 4)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    params = list(model.parameters())
    model.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]  # same objects, moved
    other = Net().to(torch.float64)
    other.load_state_dict(model.state_dict())
    x = torch.randn(2, 4, dtype=torch.float64)
    assert torch.equal(other(x), model(x))
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({})
    twin = copy.deepcopy(model)
    assert all(p.data_ptr() != q.data_ptr() and torch.equal(p, q)
               for p, q in zip(twin.parameters(), model.parameters(), strict=True))
    assert torch.equal(pickle.loads(pickle.dumps(model))(x), model(x))


def test_forward_hooks_see_every_call_until_removed() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    seen = []
    handle = model[0].register_forward_hook(lambda m, args, out: seen.append(out.shape))
    model(torch.randn(2, 3))
    doubled = model.register_forward_hook(lambda m, args, out: out * 2)
    x = torch.randn(2, 3)
    assert torch.equal(model(x), 2 * model[1](model[0](x)))
    handle.remove()
    doubled.remove()
    model(torch.randn(2, 3))
    assert seen == [torch.Size([2, 4])] * 3  # two calls of the model, one of model[0]; none after removal


def test_linear_refuses_wrong_inputs() -> None:
    with pytest.raises(ValueError, match="last dimension is 3"):
        nn.Linear(3, 2)(torch.randn(4, 5))
    with pytest.raises(NotImplementedError, match="no forward"):
        nn.Module()(1)


def test_backprop_layers_are_nn_modules() -> None:
    model = backprop.mlp(4, 5, 3)
    assert isinstance(model, nn.Module) and isinstance(model.layers[0], nn.Module)
    assert backprop.Module is nn.Module and backprop.Parameter is nn.Parameter
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())


# --------------------------------------------------------------------------- optimizers
def trajectory(optimizer_class, options: dict, *, dtype=torch.float64, steps: int = 8,
               seed: int = 0) -> list[torch.Tensor]:
    """Every parameter after every step of training a small MLP on fixed random data."""
    model, _ = pair(seed, dtype)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 5, generator=generator, dtype=dtype)
    y = torch.randn(16, 3, generator=generator, dtype=dtype)
    optimizer = optimizer_class(model.parameters(), **options)
    history = []
    for _ in range(steps):
        loss = F.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(torch.cat([p.detach().flatten().clone() for p in model.parameters()]))
    return history


CASES = [("SGD", {"lr": 0.1}), ("SGD", {"lr": 0.05, "momentum": 0.9}),
         ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.5, "weight_decay": 0.01}),
         ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
         ("Adam", {}), ("Adam", {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-6, "weight_decay": 0.1}),
         ("AdamW", {"lr": 0.01}), ("AdamW", {"lr": 0.02, "weight_decay": 0.5, "betas": (0.0, 0.99)})]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name,options", CASES)
def test_optimizers_follow_torch_step_for_step(name, options, dtype) -> None:
    ours = trajectory(getattr(nn, name), options, dtype=dtype)
    theirs = trajectory(getattr(torch.optim, name), options, dtype=dtype)
    assert not torch.equal(ours[0], ours[-1])  # it moved
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_momentum_buffer_starts_at_the_first_gradient() -> None:
    p = nn.Parameter(torch.zeros(1))
    optimizer = nn.SGD([p], lr=1.0, momentum=0.9, dampening=0.5)
    for _ in range(2):
        p.grad = torch.ones(1)
        optimizer.step()
    # buffer 1 (not 0.5), then 0.9 + 0.5 = 1.4; p = -(1 + 1.4)
    torch.testing.assert_close(p.detach(), torch.tensor([-2.4]))


def test_param_groups_and_zero_grad() -> None:
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    optimizer = nn.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    optimizer.step()
    torch.testing.assert_close(a.detach(), torch.full((2,), 0.9))
    torch.testing.assert_close(b.detach(), torch.full((2,), 0.5))
    optimizer.zero_grad()
    assert a.grad is None and b.grad is None
    assert "lr=0.1" in repr(optimizer)


BAD = [("SGD", {"lr": -0.1}), ("SGD", {"lr": 0.1, "momentum": -0.5}),
       ("SGD", {"lr": 0.1, "weight_decay": -1.0}), ("SGD", {"lr": 0.1, "nesterov": True}),
       ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True}),
       ("Adam", {"lr": -1.0}), ("Adam", {"eps": -1e-8}), ("Adam", {"betas": (1.0, 0.999)}),
       ("Adam", {"betas": (0.9, -0.1)}), ("Adam", {"weight_decay": -0.1}), ("AdamW", {"betas": (0.9, 1.5)})]


@pytest.mark.parametrize("name,options", BAD)
def test_bad_hyperparameters_get_torchs_refusal(name, options) -> None:
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, name)([tnn.Parameter(torch.zeros(1))], **options)
    with pytest.raises(ValueError) as ours:
        getattr(nn, name)([nn.Parameter(torch.zeros(1))], **options)
    assert str(ours.value) == str(theirs.value) and "\n" not in str(ours.value)


def test_optimizer_refuses_what_it_cannot_train() -> None:
    with pytest.raises(ValueError, match="empty parameter list"):
        nn.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="non-leaf"):
        nn.Adam([torch.ones(2, requires_grad=True) * 2])
    p = nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match="appears twice"):
        nn.SGD([p, p], lr=0.1)
