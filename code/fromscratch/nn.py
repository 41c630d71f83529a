"""Modules and optimizers written out: Parameter, Module, Sequential, Linear, SGD, Adam, AdamW.

    model = Sequential(Linear(64, 50), ReLU(), Linear(50, 10))   # torch's layout: weight (out, in)
    optimizer = Adam(model.parameters(), lr=1e-3)
    loss = F.cross_entropy(model(x), y)
    loss.backward()                      # torch's autograd fills every Parameter's .grad
    optimizer.step(); optimizer.zero_grad()

A `Module` registers the Parameters and Modules assigned to its attributes, in the order they were
assigned, so `parameters()` and `named_parameters()` walk them as torch.nn.Module does. The
optimizers follow torch.optim's update equations step for step (see each class's docstring).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch._C import _disabled_torch_function_impl


def forget_gradients(parameters: Iterable[Tensor], set_to_none: bool = True) -> None:
    """Each gradient set to None (torch's default) or filled with zeros in place."""
    for p in parameters:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            p.grad.detach_().zero_()


# --------------------------------------------------------------------------- Parameter
class Parameter(Tensor):
    """A tensor that a Module registers as trainable; requires_grad by default.

    Made as torch makes nn.Parameter, with `Tensor._make_subclass`, so it is a leaf of autograd and
    shares its storage with `data`. Operations on it return plain tensors.
    """

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            data = torch.empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter wraps a tensor, got {type(data).__name__}; use torch.tensor first")
        return Tensor._make_subclass(cls, data.detach(), requires_grad)

    __torch_function__ = _disabled_torch_function_impl  # x * 2 is a Tensor, not a Parameter

    def __deepcopy__(self, memo: dict) -> Parameter:
        if id(self) not in memo:
            result = type(self)(self.data.clone(memory_format=torch.preserve_format), self.requires_grad)
            if self.grad is not None:
                result.grad = self.grad.clone()
            memo[id(self)] = result
        return memo[id(self)]

    def __reduce_ex__(self, protocol: int) -> tuple:
        return (type(self), (self.data, self.requires_grad))

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


# --------------------------------------------------------------------------- Module
_HOOK_KEYS = itertools.count()


class RemovableHandle:
    """What register_forward_hook returns: `.remove()` takes the hook out again."""

    def __init__(self, hooks: dict, key: int) -> None:
        self.hooks, self.key = hooks, key

    def remove(self) -> None:
        self.hooks.pop(self.key, None)


class Module:
    """Base class of every layer and model: registers Parameters, child Modules and buffers.

    Assigning a Parameter or a Module to an attribute registers it under that name, in insertion
    order. `__call__` runs `forward` (then any forward hooks). `training` is True after `train()`,
    False after `eval()`, for the module and all its descendants.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ----------------------------------------------------------------- registration
    def _registry(self, kind: str, name: str) -> OrderedDict:
        registry = self.__dict__.get(kind)
        if registry is None:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() ran; call "
                                 f"super().__init__() first in {type(self).__name__}.__init__")
        return registry

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Parameter):
            self._forget(name)
            self._registry("_parameters", name)[name] = value
        elif isinstance(value, Module):
            _check_initialised(value)
            self._forget(name)
            self._registry("_modules", name)[name] = value
        elif name in self.__dict__.get("_parameters", {}):
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r}; wrap it in "
                                "Parameter(...) or assign None")
            self._parameters[name] = None
        elif name in self.__dict__.get("_modules", {}):
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r}; assign a "
                                "Module or None")
            self._modules[name] = None
        elif name in self.__dict__.get("_buffers", {}):
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r}; assign a tensor")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        """Drop `name` from every registry and the instance dict, before registering it anew."""
        self.__dict__.pop(name, None)
        for kind in ("_parameters", "_modules", "_buffers"):
            self.__dict__.get(kind, {}).pop(name, None)

    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails
        for kind in ("_parameters", "_modules", "_buffers"):
            registry = self.__dict__.get(kind)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for kind in ("_parameters", "_modules", "_buffers"):
            registry = self.__dict__.get(kind, {})
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        names = set(super().__dir__())
        for kind in ("_parameters", "_modules", "_buffers"):
            names.update(self.__dict__.get(kind, {}))
        return sorted(names)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register `param` (or None, a slot left empty) under `name`."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter takes a Parameter or None, got {type(param).__name__}")
        self._forget(name)
        self._registry("_parameters", name)[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None) -> None:
        """A tensor that moves with the module (to, state_dict) but is not trained (running means...)."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer takes a tensor or None, got {type(tensor).__name__}")
        self._forget(name)
        self._registry("_buffers", name)[name] = tensor

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module takes a Module or None, got {type(module).__name__}")
        if module is not None:
            _check_initialised(module)
        self._forget(name)
        self._registry("_modules", name)[name] = module

    # ----------------------------------------------------------------- walking the tree
    def named_modules(self, prefix: str = "", memo: set | None = None) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, depth first, each once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def _named_members(self, kind: str, prefix: str, recurse: bool) -> Iterator[tuple[str, Tensor]]:
        seen = set()
        owners = self.named_modules(prefix) if recurse else [(prefix, self)]
        for owner_name, owner in owners:
            for name, value in owner.__dict__[kind].items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{owner_name}.{name}" if owner_name else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter), e.g. ('0.weight', ...), each shared parameter once."""
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ----------------------------------------------------------------- state
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient (None, as torch's default) or fill it with zeros."""
        forget_gradients(self.parameters(), set_to_none)

    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) takes a bool, got {type(mode).__name__}; use eval() for False")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call fn on every descendant, children before parents (as torch), then on self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Move (and cast) every parameter, its gradient and every buffer, in place: to(device), to(dtype).

        A dtype applies to floating-point tensors only, as in torch; the Parameter objects stay the
        same, so an optimizer built before the move still holds them.
        """
        device, dtype = _parse_to(args, kwargs)

        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)

        for module in self.modules():
            for p in module._parameters.values():
                if p is None:
                    continue
                p.data = move(p.data)
                if p.grad is not None:
                    p.grad = move(p.grad)
            for name, b in module._buffers.items():
                if b is not None:
                    module._buffers[name] = move(b)
        return self

    def state_dict(self) -> OrderedDict[str, Tensor]:
        """Every parameter and buffer by dotted name, detached (sharing storage, as torch's)."""
        state = OrderedDict((name, p.detach()) for name, p in self.named_parameters())
        state.update((name, b.detach()) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy values in place into the parameters and buffers of the same names (all of them)."""
        own = dict(self.named_parameters()) | dict(self.named_buffers())
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"state_dict does not fit {type(self).__name__}: missing {missing}, "
                             f"unexpected {unexpected}")
        with torch.no_grad():
            for name, tensor in own.items():
                if tensor.shape != state[name].shape:
                    raise ValueError(f"{name}: shape {tuple(state[name].shape)} in the state_dict, "
                                     f"{tuple(tensor.shape)} in the module")
                tensor.copy_(state[name])

    # ----------------------------------------------------------------- calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define one in the subclass")

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]) -> RemovableHandle:
        """hook(module, inputs, output) runs after every forward; a non-None result replaces output."""
        key = next(_HOOK_KEYS)
        self._forward_hooks[key] = hook
        return RemovableHandle(self._forward_hooks, key)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        output = self.forward(*args, **kwargs)
        for hook in list(self.__dict__.get("_forward_hooks", {}).values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # ----------------------------------------------------------------- printing
    def extra_repr(self) -> str:
        """What goes between the parentheses of this module's line in repr (sizes, options)."""
        return ""

    def __repr__(self) -> str:
        children = [f"({name}): " + repr(child).replace("\n", "\n  ")
                    for name, child in self._modules.items()]
        extra = self.extra_repr()
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = ([extra] if extra else []) + children
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _check_initialised(module: Module) -> None:
    """A child module that skipped Module.__init__ would fail later, obscurely: refuse it now."""
    if "_modules" not in module.__dict__:
        name = type(module).__name__
        raise AttributeError(f"{name} did not run Module.__init__(); call super().__init__() first in "
                             f"{name}.__init__")


def _parse_to(args: tuple, kwargs: dict) -> tuple[torch.device | None, torch.dtype | None]:
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    if kwargs:
        raise TypeError(f"to() takes device and dtype, got {', '.join(kwargs)}")
    for arg in args:
        if isinstance(arg, torch.dtype):
            dtype = arg
        elif isinstance(arg, (str, torch.device)):
            device = torch.device(arg)
        elif isinstance(arg, Tensor):
            device, dtype = arg.device, arg.dtype
        else:
            raise TypeError(f"to() takes a device, a dtype or a tensor, got {type(arg).__name__}")
    return device, dtype


# --------------------------------------------------------------------------- containers
class ModuleList(Module):
    """A list of Modules, registered under '0', '1', ...; no forward of its own."""

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        self.extend(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module | ModuleList:
        items = list(self._modules.values())
        if isinstance(index, slice):
            return type(self)(items[index])
        if not -len(items) <= index < len(items):
            raise IndexError(f"index {index} is out of range for {len(items)} modules")
        return items[index]

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for module in modules:
            self.append(module)
        return self


class Sequential(ModuleList):
    """Modules applied in order: Sequential(a, b, c)(x) == c(b(a(x)))."""

    def __init__(self, *modules: Module) -> None:
        super().__init__(modules)

    def forward(self, x: Any) -> Any:
        for module in self:
            x = module(x)
        return x


# --------------------------------------------------------------------------- layers
class Linear(Module):
    """y = x @ W.T + b with W (out_features, in_features), initialised as torch.nn.Linear.

    torch draws W and b uniformly in ±1/sqrt(in_features) (kaiming_uniform_ with a = sqrt(5));
    the bounds are computed the way torch computes them, so the same seed gives the same weights.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if in_features < 0 or out_features < 0:
            raise ValueError(f"Linear needs sizes >= 0, got in_features={in_features}, "
                             f"out_features={out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.bias = Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.in_features
        if fan_in == 0:  # torch warns and leaves an empty weight; the bias bound is 0
            bound = 0.0
        else:
            a = math.sqrt(5)
            gain = math.sqrt(2.0 / (1 + a**2))
            bound = math.sqrt(3.0) * (gain / math.sqrt(fan_in))
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                bias_bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                self.bias.uniform_(-bias_bound, bias_bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) takes inputs whose last "
                             f"dimension is {self.in_features}, got shape {tuple(x.shape)}")
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class ReLU(Module):
    """max(x, 0) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp_min(0.0)


# --------------------------------------------------------------------------- optimizers
class Optimizer:
    """Parameter groups (dicts of params and hyperparameters), per-parameter state, zero_grad.

    `params` is an iterable of tensors, or of dicts {'params': [...], 'lr': ...} whose keys override
    the defaults for that group, as in torch.optim.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list; pass model.parameters()")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        seen: set[int] = set()
        for group in groups:
            params = [group["params"]] if isinstance(group["params"], Tensor) else list(group["params"])
            for p in params:
                if not isinstance(p, Tensor) or not p.is_leaf:
                    what = "a non-leaf tensor" if isinstance(p, Tensor) else type(p).__name__
                    raise TypeError(f"{type(self).__name__} optimizes leaf tensors (Parameters), got {what}")
                if id(p) in seen:
                    raise ValueError("a parameter appears twice in the parameter groups; pass each once")
                seen.add(id(p))
            full = {**defaults, **group, "params": params}
            self._check(full)
            self.param_groups.append(full)

    def _check(self, group: dict[str, Any]) -> None:
        """Refuse bad hyperparameters with torch's messages (subclasses extend)."""
        if group["lr"] < 0.0:
            raise ValueError(f"Invalid learning rate: {group['lr']}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        forget_gradients((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.defaults.items())})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, weight decay and Nesterov, as torch.optim.SGD.

        g = grad + weight_decay * p
        b = g at the first step, else momentum * b + (1 - dampening) * g     (if momentum > 0)
        g = g + momentum * b if nesterov else b
        p = p - lr * g
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov})

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        if group["momentum"] < 0.0:
            raise ValueError(f"Invalid momentum value: {group['momentum']}")
        if group["weight_decay"] < 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd != 0:
                    g = g.add(p, alpha=wd)
                if momentum != 0:
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = torch.clone(g).detach()
                    else:
                        buf.mul_(momentum).add_(g, alpha=1 - group["dampening"])
                    g = g.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(g, alpha=-lr)


class Adam(Optimizer):
    """Adam (Kingma & Ba), as torch.optim.Adam; weight decay is L2 added to the gradient.

        g = grad + weight_decay * p
        m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g²       (both start at 0)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    decoupled = False

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        if group["eps"] < 0.0:
            raise ValueError(f"Invalid epsilon value: {group['eps']}")
        for index in (0, 1):
            if not 0.0 <= group["betas"][index] < 1.0:
                raise ValueError(f"Invalid beta parameter at index {index}: {group['betas'][index]}")
        if group["weight_decay"] < 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                if wd != 0:
                    if self.decoupled:
                        p.mul_(1 - lr * wd)
                    else:
                        g = g.add(p, alpha=wd)
                m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                step_size = lr / (1 - beta1**t)
                denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(eps)
                p.addcdiv_(m, denom, value=-step_size)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW: p *= 1 - lr wd first."""

    decoupled = True

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
