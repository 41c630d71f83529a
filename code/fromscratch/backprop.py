"""Backpropagation by hand: layers with an explicit forward and backward, trained without autograd.

    model = mlp(64, 50, 10)                      # Linear -> ReLU -> Linear, weights (n_in, n_out)
    loss = CrossEntropy()
    value = loss(model(x), y)
    model.backward(loss.backward())              # every Parameter now holds .grad
    sgd_step(model.parameters(), lr=0.1)

The layers are fromscratch.nn Modules (the one Module class of the package) with a `backward`
added; their Parameters are tensors whose `.grad` the hand-written backward fills.

The matrix forms follow from the shapes: for y = x @ W + b with x (N, n_in) and W (n_in, n_out),
dL/dx = g @ W.T, dL/dW = x.T @ g and dL/db = g.sum(0), where g = dL/dy has y's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from fromscratch import losses
from fromscratch.nn import Module, Parameter


# --------------------------------------------------------------------------- the functions
def linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """y = x @ w + b for x (N, n_in), w (n_in, n_out), b (n_out,)."""
    return x @ w + b


def linear_backward(x: Tensor, w: Tensor, grad_y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of a linear layer with respect to x, w and b, given g = dL/dy (N, n_out)."""
    return grad_y @ w.T, x.T @ grad_y, grad_y.sum(0)


def relu(x: Tensor) -> Tensor:
    """max(x, 0) elementwise."""
    return x.clamp_min(0.0)


def relu_backward(x: Tensor, grad_y: Tensor) -> Tensor:
    """The ReLU's Jacobian is diagonal: 0 where x <= 0 (torch's subgradient at 0), else 1 (also at nan)."""
    return grad_y * (~(x <= 0)).to(grad_y.dtype)


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean of the squared errors over every element."""
    return ((pred - target) ** 2).mean()


def mse_backward(pred: Tensor, target: Tensor) -> Tensor:
    """d mse / d pred = 2 (pred - target) / number of elements (summed back to pred's shape)."""
    residual = pred - target
    return (2.0 * residual / residual.numel()).sum_to_size(pred.shape)


# --------------------------------------------------------------------------- the classes
class Layer(Module):
    """A fromscratch.nn.Module with a hand-written backward: __call__ remembers inputs and output.

    Subclasses define forward(*inputs) and backward(grad_output) -> dL/d(input); a backward also
    stores the gradients of the layer's parameters in their `.grad` (overwriting, not accumulating).
    Forwards read `parameter.data`, so autograd records nothing.
    """

    inputs: tuple[Tensor, ...] = ()
    output: Tensor | None = None

    def __call__(self, *inputs: Tensor) -> Tensor:
        self.inputs = inputs
        self.output = self.forward(*inputs)
        return self.output

    def backward(self, grad_output: Tensor) -> Tensor:
        raise NotImplementedError

    def _needs_forward(self) -> None:
        if not self.inputs:
            raise RuntimeError(f"{type(self).__name__}.backward called before a forward pass; "
                               "call the module on an input first")


def _set_grad(parameter: Parameter, grad: Tensor) -> None:
    """Store a hand-computed gradient in a Parameter, as autograd's .grad would hold it."""
    with torch.no_grad():
        parameter.grad = grad.detach()


class Linear(Layer):
    """y = x @ W + b, W of shape (n_in, n_out) and He-initialised for the ReLU that follows."""

    def __init__(self, n_in: int, n_out: int, *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, gain: float = math.sqrt(2.0)) -> None:
        if n_in < 1 or n_out < 1:
            raise ValueError(f"Linear needs positive sizes, got n_in={n_in}, n_out={n_out}")
        super().__init__()
        weight = torch.randn(n_in, n_out, generator=generator, dtype=dtype) * (gain / math.sqrt(n_in))
        self.weight = Parameter(weight)
        self.bias = Parameter(torch.zeros(n_out, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.weight.shape[0]:
            raise ValueError(f"Linear({self.weight.shape[0]}, {self.weight.shape[1]}) takes (N, "
                             f"{self.weight.shape[0]}) inputs, got {tuple(x.shape)}")
        return linear(x, self.weight.data, self.bias.data)

    def backward(self, grad_output: Tensor) -> Tensor:
        self._needs_forward()
        grad_x, grad_w, grad_b = linear_backward(self.inputs[0], self.weight.data, grad_output)
        _set_grad(self.weight, grad_w)
        _set_grad(self.bias, grad_b)
        return grad_x

    def __repr__(self) -> str:
        return f"Linear({self.weight.shape[0]}, {self.weight.shape[1]})"


class ReLU(Layer):
    """max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        return relu(x)

    def backward(self, grad_output: Tensor) -> Tensor:
        self._needs_forward()
        return relu_backward(self.inputs[0], grad_output)

    def __repr__(self) -> str:
        return "ReLU()"


class MSE(Layer):
    """Mean squared error between predictions and targets of the same shape."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"MSE needs pred and target of one shape, got {tuple(pred.shape)} and "
                             f"{tuple(target.shape)}; one-hot encode class labels first")
        return mse(pred, target)

    def backward(self, grad_output: Tensor | float = 1.0) -> Tensor:
        self._needs_forward()
        return mse_backward(*self.inputs) * grad_output


class CrossEntropy(Layer):
    """Mean cross-entropy of logits (N, C) against class indices; backward is softmax - one_hot.

    Targets equal to `ignore_index` count for nothing, as in torch: the mean is over the other rows
    (nan when there is none, with a zero gradient).
    """

    def __init__(self, ignore_index: int = -100) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"CrossEntropy takes logits (N, C), got {got}; flatten extra dimensions "
                             "into N first")
        self.log_probs = losses.log_softmax(logits, dim=1)
        return losses.nll_loss(self.log_probs, target, ignore_index=self.ignore_index)

    def backward(self, grad_output: Tensor | float = 1.0) -> Tensor:
        self._needs_forward()
        target = self.inputs[1]
        keep = target != self.ignore_index
        rows = torch.arange(len(target), device=target.device)[keep]
        grad = self.log_probs.exp()
        grad[rows, target[keep]] -= 1.0
        grad[~keep] = 0.0
        return grad * (grad_output / keep.sum().clamp_min(1).to(grad.dtype))


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse, each passing dL/d(its input) on.

    The layers are registered as children '0', '1', ..., so named_parameters() gives '0.weight'.
    """

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        for index, layer in enumerate(layers):
            self.add_module(str(index), layer)

    @property
    def layers(self) -> list[Layer]:
        return list(self._modules.values())

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_output: Tensor) -> Tensor:
        self._needs_forward()
        for layer in reversed(self.layers):
            grad_output = layer.backward(grad_output)
        return grad_output

    def __repr__(self) -> str:
        return "Sequential(" + ", ".join(map(repr, self.layers)) + ")"


def mlp(n_in: int, n_hidden: int, n_out: int, *, seed: int = 0, dtype: torch.dtype = torch.float32
        ) -> Sequential:
    """Linear -> ReLU -> Linear; the last layer has gain 1 (nothing rectifies its output)."""
    generator = torch.Generator().manual_seed(seed)
    return Sequential(Linear(n_in, n_hidden, generator=generator, dtype=dtype), ReLU(),
                      Linear(n_hidden, n_out, generator=generator, dtype=dtype, gain=1.0))


def to_torch(model: Sequential) -> nn.Sequential:
    """The same network as torch.nn modules with the same weights (torch stores W transposed)."""
    layers: list[nn.Module] = []
    for layer in model.layers:
        if isinstance(layer, Linear):
            n_in, n_out = layer.weight.shape
            torch_layer = nn.Linear(n_in, n_out, dtype=layer.weight.data.dtype,
                                    device=layer.weight.data.device)
            with torch.no_grad():
                torch_layer.weight.copy_(layer.weight.data.T)
                torch_layer.bias.copy_(layer.bias.data)
            layers.append(torch_layer)
        elif isinstance(layer, ReLU):
            layers.append(nn.ReLU())
        else:
            raise TypeError(f"to_torch knows Linear and ReLU, not {type(layer).__name__}")
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- training and checks
def sgd_step(parameters: Iterable[Parameter], lr: float) -> None:
    """p <- p - lr * p.grad for every parameter that has a gradient (on p.data: no autograd)."""
    for p in parameters:
        if p.grad is not None:
            p.data -= lr * p.grad


def batches(n: int, batch_size: int, epochs: int, seed: int = 0) -> Iterator[Tensor]:
    """Index tensors of shuffled mini-batches, the same sequence for the same seed."""
    if batch_size < 1 or epochs < 0 or n < 0:
        raise ValueError(f"batch_size must be >= 1 and n, epochs >= 0, got {batch_size}, {n}, {epochs}")
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        yield from (part for part in order.split(batch_size) if len(part))  # no rows: no batch


def train_by_hand(model: Sequential, loss_fn: Layer, x: Tensor, y: Tensor, *, lr: float,
                  epochs: int, batch_size: int, seed: int = 0) -> list[float]:
    """Mini-batch SGD with the hand-written backward pass; the loss of every step."""
    history = []
    for index in batches(len(x), batch_size, epochs, seed):
        value = loss_fn(model(x[index]), y[index])
        model.backward(loss_fn.backward())
        sgd_step(model.parameters(), lr)
        history.append(value.item())
    return history


def train_with_autograd(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                        y: Tensor, *, lr: float, epochs: int, batch_size: int, seed: int = 0
                        ) -> list[float]:
    """The same loop with torch's autograd and torch.optim.SGD: the reference."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    history = []
    for index in batches(len(x), batch_size, epochs, seed):
        value = loss_fn(model(x[index]), y[index])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        history.append(value.item())
    return history


def max_relative_error(ours: Tensor, reference: Tensor) -> float:
    """max |ours - reference| / max |reference|: the error on the scale of the tensor."""
    scale = reference.abs().max().item()
    return (ours - reference).abs().max().item() / (scale if scale > 0 else 1.0)


def compare_with_autograd(model: Sequential, loss_fn: Layer, x: Tensor, y: Tensor) -> list[dict]:
    """Gradients of every parameter and of the input, by hand and by autograd, and their errors."""
    value = loss_fn(model(x), y)
    grad_x = model.backward(loss_fn.backward())
    torch_model = to_torch(model)
    x_leaf = x.detach().clone().requires_grad_()
    out = torch_model(x_leaf)
    torch_loss = (nn.functional.mse_loss(out, y) if isinstance(loss_fn, MSE)
                  else nn.functional.cross_entropy(out, y, ignore_index=loss_fn.ignore_index))
    torch_loss.backward()
    loss_error = abs(value.item() - torch_loss.item())
    rows = [{"tensor": "loss", "shape": "()", "max_abs_error": loss_error,
             "max_rel_error": loss_error / (abs(torch_loss.item()) or 1.0)}]  # a loss of 0: absolute
    torch_grads = {}
    for index, layer in enumerate(torch_model):
        if isinstance(layer, nn.Linear):
            torch_grads[f"{index}.weight"] = layer.weight.grad.T
            torch_grads[f"{index}.bias"] = layer.bias.grad
    pairs = [(name, p.grad, torch_grads[name]) for name, p in model.named_parameters()]
    pairs.append(("input", grad_x, x_leaf.grad))
    for name, ours, reference in pairs:
        rows.append({"tensor": name, "shape": str(tuple(ours.shape)),
                     "max_abs_error": (ours - reference).abs().max().item(),
                     "max_rel_error": max_relative_error(ours, reference)})
    return rows


def finite_difference_grad(fn: Callable[[], Tensor], tensor: Tensor, eps: float = 1e-6) -> Tensor:
    """Central differences (f(t + eps) - f(t - eps)) / 2 eps for every element of `tensor`, in place.

    `fn` recomputes the scalar loss from the current values of `tensor`; use float64. The
    truncation error is about eps² |f'''| / 6 and the rounding error about 1e-16 |f| / eps:
    for f and f''' of order one they meet near eps = 1e-5. A loss that is quadratic in the
    element (piecewise, as with ReLU and squared error) has no truncation error unless
    t ± eps crosses a kink, so there only rounding remains, and a larger eps is more accurate.
    """
    grad = torch.empty_like(tensor)
    flat, flat_grad = tensor.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        saved = flat[i].item()
        flat[i] = saved + eps
        plus = fn().item()
        flat[i] = saved - eps
        minus = fn().item()
        flat[i] = saved
        flat_grad[i] = (plus - minus) / (2 * eps)
    return grad


def accuracy(logits: Tensor, target: Tensor) -> float:
    """Fraction of rows whose largest logit is the target class."""
    return (logits.argmax(1) == target).float().mean().item()
