"""A training loop made of callbacks: the Learner runs fit/epoch/batch, callbacks do the work.

    learn = Learner(model, dls, F.cross_entropy, lr=0.1,
                    cbs=[TrainCB(), DeviceCB(), MetricsCB(accuracy=Accuracy()), ProgressCB()])
    learn.fit(3)
    lrs, losses = learn.lr_find()

The Learner itself only loops. At each step it calls a hook, by name, on every callback that
has it, in the callbacks' `order`:

* `before_fit / after_fit / cleanup_fit`, the same three for `epoch` and `batch` (`with_cbs`);
* inside a batch: `predict`, `get_loss`, and when training `backward`, `step`, `zero_grad`.
  `learn.predict()` and the other four are not methods of the Learner: `Learner.__getattr__`
  turns each into "call this hook on the callbacks", so the loop reads like a training step.

`after_X` runs when X finished; `cleanup_X` runs always, also after a `Cancel<X>Exception`
(which skips the rest of that batch, epoch or fit) and after an error. State lives on the
Learner (`learn.batch`, `learn.preds`, `learn.loss`, `learn.epoch`, `learn.training`,
`learn.model`, `learn.opt`), where every callback can read and change it.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from fromscratch.device import resolve_device, to_device

__all__ = ["Accuracy", "Callback", "CancelBatchException", "CancelEpochException", "CancelFitException",
           "DeviceCB", "LRFind", "LRFinderCB", "Learner", "Mean", "MetricsCB", "ProgressCB", "TrainCB",
           "get_lr", "run_cbs", "set_lr", "to_device", "with_cbs"]

STEP_HOOKS = ("predict", "get_loss", "backward", "step", "zero_grad")  # delegated by __getattr__


class CancelFitException(Exception):  # noqa: N818 (miniai's names)
    """Raised by a callback to end the fit; `cleanup_fit` still runs, `after_fit` does not."""


class CancelEpochException(Exception):  # noqa: N818 (miniai's names)
    """Raised by a callback to skip the rest of this epoch (train or valid pass)."""


class CancelBatchException(Exception):  # noqa: N818 (miniai's names)
    """Raised by a callback to skip the rest of this batch."""


CANCEL = {"fit": CancelFitException, "epoch": CancelEpochException, "batch": CancelBatchException}


class Callback:
    """Base class: hooks are methods named after the event, taking the Learner; lower order runs first."""

    order: int = 0


def run_cbs(cbs: Iterable[Any], hook: str, learn: Any = None) -> None:
    """Call `cb.<hook>(learn)` on every callback that has the hook, by ascending `order` (stable)."""
    for cb in sorted(cbs, key=lambda cb: cb.order):
        method = getattr(cb, hook, None)
        if method is not None:
            method(learn)


def with_cbs(name: str) -> Callable[[Callable], Callable]:
    """Decorate a Learner method with `before_<name>`, `after_<name>` and `cleanup_<name>` hooks.

    `Cancel<Name>Exception` raised by the method or a hook is caught here: it skips the rest
    (and `after_<name>`). `cleanup_<name>` runs in every case, errors included.
    """
    if name not in CANCEL:
        raise ValueError(f"with_cbs names one of {', '.join(CANCEL)}, got {name!r}")
    cancel = CANCEL[name]

    def decorator(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapped(learn: Learner, *args: Any, **kwargs: Any) -> None:
            try:
                learn.callback(f"before_{name}")
                method(learn, *args, **kwargs)
                learn.callback(f"after_{name}")
            except cancel:
                pass
            finally:
                learn.callback(f"cleanup_{name}")
        return wrapped
    return decorator


def _check_callbacks(cbs: Iterable[Any]) -> list[Any]:
    cbs = list(cbs)
    for cb in cbs:
        if isinstance(cb, type):
            raise TypeError(f"pass callback instances, not classes: {cb.__name__}() instead of {cb.__name__}")
        if not isinstance(getattr(cb, "order", None), (int, float)):
            raise TypeError(f"callback {cb!r} has no numeric `order`; subclass Callback or set order = 0")
    return cbs


def _check_lr(lr: float) -> float:
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    return float(lr)


class Learner:
    """Fits `model` on `dls.train` / `dls.valid` by calling the hooks of its callbacks.

    `dls` is anything with `.train` and `.valid` iterables of batches; `opt_func(params, lr=lr)`
    builds the optimizer at the start of every `fit`. Without a callback that defines
    `predict` (e.g. `TrainCB`) nothing would train, so `fit` refuses.
    """

    def __init__(self, model: Any, dls: Any, loss_func: Callable = F.cross_entropy, lr: float = 0.1,
                 cbs: Sequence[Any] | None = None, opt_func: Callable = torch.optim.SGD) -> None:
        if not callable(getattr(model, "parameters", None)) or not callable(model):
            raise TypeError(f"model must be callable and have parameters(), got {type(model).__name__}")
        if not (hasattr(dls, "train") and hasattr(dls, "valid")):
            raise TypeError(f"dls needs .train and .valid iterables of batches, got {type(dls).__name__}; "
                            "wrap two loaders, e.g. fromscratch.data.DataLoaders(train, valid)")
        if not callable(loss_func) or not callable(opt_func):
            raise TypeError("loss_func and opt_func must be callables (e.g. F.cross_entropy, "
                            "torch.optim.SGD)")
        self.model, self.dls, self.loss_func, self.opt_func = model, dls, loss_func, opt_func
        self.lr = _check_lr(lr)
        self.cbs = _check_callbacks(cbs or [])
        self.opt, self.training, self.epoch, self.n_epochs = None, False, 0, 0

    def callback(self, hook: str) -> None:
        """Run `hook` on every callback."""
        run_cbs(self.cbs, hook, self)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: `learn.predict()` etc. call that hook on the callbacks.
        if name in STEP_HOOKS:
            return functools.partial(self.callback, name)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def fit(self, n_epochs: int = 1, train: bool = True, valid: bool = True,
            cbs: Sequence[Any] | None = None, lr: float | None = None) -> None:
        """Train for `n_epochs` (each a train pass then a valid pass); `cbs` join for this fit only."""
        if isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 0:
            raise ValueError(f"n_epochs must be a whole number >= 0, got {n_epochs!r}")
        extra = _check_callbacks(cbs or [])
        lr = self.lr if lr is None else _check_lr(lr)
        defines_step = hasattr(type(self), "predict") or any(hasattr(cb, "predict")
                                                             for cb in self.cbs + extra)
        if train and n_epochs and not defines_step:
            raise ValueError("no callback defines predict/get_loss/backward/step: add TrainCB() to cbs")
        self.cbs += extra
        try:
            self.n_epochs, self.epochs = n_epochs, range(n_epochs)
            self.opt = self.opt_func(self.model.parameters(), lr=lr)
            self._fit(train, valid)
        finally:
            for cb in extra:
                self.cbs.remove(cb)

    @with_cbs("fit")
    def _fit(self, train: bool, valid: bool) -> None:
        for epoch in self.epochs:
            self.epoch = epoch
            if train:
                self.one_epoch(True)
            if valid:
                with torch.no_grad():
                    self.one_epoch(False)

    def one_epoch(self, training: bool) -> None:
        """One pass over `dls.train` (training) or `dls.valid`."""
        self.training = training
        if callable(getattr(self.model, "train", None)):
            self.model.train(training)
        self.dl = self.dls.train if training else self.dls.valid
        self._one_epoch()

    @with_cbs("epoch")
    def _one_epoch(self) -> None:
        for i, batch in enumerate(self.dl):
            self.iter, self.batch = i, batch
            self._one_batch()

    @with_cbs("batch")
    def _one_batch(self) -> None:
        self.predict()
        self.get_loss()
        if self.training:
            self.backward()
            self.step()
            self.zero_grad()

    def lr_find(self, start_lr: float = 1e-5, gamma: float = 1.3, max_mult: float = 3,
                max_epochs: int = 10, plot: bool = True) -> LRFind:
        """Grow the lr by `gamma` every batch from `start_lr` until the loss passes `max_mult` times
        its minimum (or is nan); the weights are put back afterwards. Returns (lrs, losses)."""
        _check_lr(start_lr)
        if not gamma > 1 or not max_mult > 1:
            raise ValueError(f"gamma and max_mult must be > 1, got gamma={gamma}, max_mult={max_mult}")
        finder = LRFinderCB(gamma, max_mult)
        self.fit(max_epochs, valid=False, cbs=[finder], lr=start_lr)
        found = LRFind(finder.lrs, finder.losses)
        if plot:
            found.plot()
        return found


# --------------------------------------------------------------------------- callbacks
class TrainCB(Callback):
    """The training step: model on the first `n_inp` items of the batch, loss on the rest, SGD step."""

    def __init__(self, n_inp: int = 1) -> None:
        self.n_inp = n_inp

    def predict(self, learn: Learner) -> None:
        learn.preds = learn.model(*learn.batch[:self.n_inp])

    def get_loss(self, learn: Learner) -> None:
        learn.loss = learn.loss_func(learn.preds, *learn.batch[self.n_inp:])

    def backward(self, learn: Learner) -> None:
        learn.loss.backward()

    def step(self, learn: Learner) -> None:
        learn.opt.step()

    def zero_grad(self, learn: Learner) -> None:
        learn.opt.zero_grad()


class DeviceCB(Callback):
    """Put the model on `device` before the fit and every batch on it before the batch."""

    order = -10  # before any callback that looks at the batch

    def __init__(self, device: str | torch.device = "auto") -> None:
        self.device = resolve_device(device)

    def before_fit(self, learn: Learner) -> None:
        if callable(getattr(learn.model, "to", None)):
            learn.model.to(self.device)

    def before_batch(self, learn: Learner) -> None:
        learn.batch = to_device(learn.batch, self.device)


class Mean:
    """Running mean of values weighted by how many items each stands for (torchmetrics-like)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, value: torch.Tensor | float, weight: int = 1) -> None:
        value = value.detach() if isinstance(value, torch.Tensor) else value
        self.total = self.total + value * weight
        self.count += weight

    def compute(self) -> float:
        if self.count == 0:
            raise ValueError("no values were added to this Mean since its reset")
        return float(self.total) / self.count


class Accuracy(Mean):
    """Share of rows whose highest score is the target class, over all rows seen since the reset."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        if preds.shape[:-1] != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} must be target's shape {tuple(target.shape)} "
                             "plus one dimension of class scores")
        self.total = self.total + (preds.argmax(-1) == target).sum()  # stays on the device: no sync
        self.count += target.numel()


class MetricsCB(Callback):
    """Per epoch and split: the mean loss and each metric, weighted by batch size.

    Metrics are objects with reset/update(preds, target)/compute (torchmetrics' interface, or
    `Accuracy`). Each epoch adds a row to `history` and passes it to `log` (print by default;
    ProgressCB shows it in its table instead).
    """

    def __init__(self, *metrics: Any, **named: Any) -> None:
        self.metrics = {type(m).__name__.lower(): m for m in metrics} | named
        for name, metric in self.metrics.items():
            if not all(callable(getattr(metric, a, None)) for a in ("reset", "update", "compute")):
                raise TypeError(f"metric {name!r} needs reset(), update(preds, target) and compute()")
        self.loss = Mean()
        self.history: list[dict[str, Any]] = []
        self.log: Callable[[dict[str, Any]], None] = print

    def before_fit(self, learn: Learner) -> None:
        self.history = []

    def before_epoch(self, learn: Learner) -> None:
        for metric in [*self.metrics.values(), self.loss]:
            metric.reset()

    def after_batch(self, learn: Learner) -> None:
        x, y = learn.batch[0], learn.batch[-1]
        for metric in self.metrics.values():
            metric.update(learn.preds.detach(), y)
        self.loss.update(learn.loss, weight=len(x))

    def after_epoch(self, learn: Learner) -> None:
        if self.loss.count == 0:  # an empty loader
            return
        row = {"epoch": learn.epoch, "split": "train" if learn.training else "valid",
               "loss": self.loss.compute()}
        row |= {name: metric.compute() for name, metric in self.metrics.items()}
        self.history.append(row)
        self.log(row)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class ProgressCB(Callback):
    """Show progress while fitting: in a notebook a live loss plot and metrics table, updated in place
    (so an executed notebook keeps only the final picture and table); elsewhere a tqdm bar.

    The losses stay in `train_losses` (per batch) and `valid_losses` (per epoch) for `figure()`.
    """

    order = MetricsCB.order + 1

    def __init__(self, plot: bool = True, every: float = 1.0) -> None:
        self.plot, self.every = plot, every

    def before_fit(self, learn: Learner) -> None:
        self.train_losses: list[float] = []
        self.valid_losses: list[tuple[float, float]] = []  # (batches seen, mean valid loss)
        self.rows: list[dict[str, Any]] = []
        self.metrics = next((cb for cb in learn.cbs if isinstance(cb, MetricsCB)), None)
        if self.metrics is not None:
            self._saved_log, self.metrics.log = self.metrics.log, self.rows.append
        self.live, self._last_draw, self.bar = _in_notebook(), 0.0, None
        if self.live:
            from IPython.display import Markdown, display

            self.fig_handle = display(Markdown(""), display_id=True) if self.plot else None
            self.table_handle = display(Markdown(""), display_id=True)
        else:
            from tqdm import tqdm

            per_epoch = len(learn.dls.train) if hasattr(learn.dls.train, "__len__") else None
            total = per_epoch * learn.n_epochs if per_epoch is not None else None
            self.bar = tqdm(total=total, desc="fit", disable=None, leave=False)

    def before_epoch(self, learn: Learner) -> None:
        self._valid_sum, self._valid_n = 0.0, 0

    def after_batch(self, learn: Learner) -> None:
        loss = _scalar(learn.loss)
        if learn.training:
            self.train_losses.append(loss)
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(loss=f"{loss:.3g}", refresh=False)
            elif self.plot and time.perf_counter() - self._last_draw > self.every:
                self._draw()
        else:
            n = len(learn.batch[0])
            self._valid_sum, self._valid_n = self._valid_sum + loss * n, self._valid_n + n

    def after_epoch(self, learn: Learner) -> None:
        if not learn.training and self._valid_n:
            self.valid_losses.append((len(self.train_losses), self._valid_sum / self._valid_n))
        if self.live:
            self._draw()

    def cleanup_fit(self, learn: Learner) -> None:
        if self.metrics is not None:
            self.metrics.log = self._saved_log
        if self.bar is not None:
            self.bar.close()
        if self.live:
            self._draw()

    def _draw(self) -> None:
        from IPython.display import Image, Markdown

        from fromscratch.bench import table

        self._last_draw = time.perf_counter()
        if self.fig_handle is not None and self.train_losses:
            self.fig_handle.update(Image(data=_png(self.figure())))
        rows = [{k: f"{v:.4g}" if isinstance(v, float) else v for k, v in row.items()} for row in self.rows]
        self.table_handle.update(Markdown(table(rows)))

    def figure(self):
        """The training loss per batch and the validation loss per epoch against batches seen."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 3.2), layout="tight")
        ax = fig.subplots()
        ax.plot(range(1, len(self.train_losses) + 1), self.train_losses, lw=0.8, label="train (per batch)")
        if self.valid_losses:
            ax.plot(*zip(*self.valid_losses, strict=True), "o-", label="valid (per epoch)")
        ax.set(xlabel="training batches seen", ylabel="loss")
        if self.train_losses and min(self.train_losses) > 0:
            ax.set_yscale("log")
        ax.legend()
        return fig


def _scalar(value: Any) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _png(fig) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def get_lr(opt: Any) -> float:
    """The learning rate of a torch optimizer (first param group) or of one with an `lr` attribute."""
    if hasattr(opt, "param_groups"):
        return opt.param_groups[0]["lr"]
    if hasattr(opt, "lr"):
        return opt.lr
    raise TypeError(f"{type(opt).__name__} has neither param_groups nor lr")


def set_lr(opt: Any, lr: float) -> None:
    """Set the learning rate of a torch optimizer (every param group) or of one with an `lr` attribute."""
    if hasattr(opt, "param_groups"):
        for group in opt.param_groups:
            group["lr"] = lr
    elif hasattr(opt, "lr"):
        opt.lr = lr
    else:
        raise TypeError(f"{type(opt).__name__} has neither param_groups nor lr")


class LRFinderCB(Callback):
    """Multiply the lr by `gamma` after every training batch; stop when the loss exceeds `max_mult`
    times its minimum or is nan. Records `lrs` and `losses`; puts the weights back at the end."""

    def __init__(self, gamma: float = 1.3, max_mult: float = 3) -> None:
        self.gamma, self.max_mult = gamma, max_mult

    def before_fit(self, learn: Learner) -> None:
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.best = math.inf
        model = learn.model
        if callable(getattr(model, "state_dict", None)):
            self.saved = copy.deepcopy(model.state_dict())
        else:
            self.saved = [p.detach().clone() for p in model.parameters()]

    def after_batch(self, learn: Learner) -> None:
        if not learn.training:
            raise CancelEpochException()
        loss = _scalar(learn.loss)
        self.lrs.append(get_lr(learn.opt))
        self.losses.append(loss)
        self.best = min(self.best, loss)
        if math.isnan(loss) or loss > self.max_mult * self.best:
            raise CancelFitException()
        set_lr(learn.opt, get_lr(learn.opt) * self.gamma)

    def cleanup_fit(self, learn: Learner) -> None:
        model = learn.model
        if isinstance(self.saved, dict):
            model.load_state_dict(self.saved)
        else:
            with torch.no_grad():
                for p, saved in zip(model.parameters(), self.saved, strict=True):
                    p.copy_(saved)


class LRFind(NamedTuple):
    """What `lr_find` measured: the lr of each batch and its training loss."""

    lrs: list[float]
    losses: list[float]

    @property
    def min_lr(self) -> float:
        """The lr whose batch had the lowest loss."""
        if not self.losses:
            raise ValueError("the lr finder recorded no batch")
        return self.lrs[min(range(len(self.losses)), key=self.losses.__getitem__)]

    @property
    def suggestion(self) -> float:
        """A rule of thumb, nothing more: a tenth of `min_lr`."""
        return self.min_lr / 10

    def plot(self, ax=None):
        """Loss against lr on a log axis, `min_lr` and `suggestion` marked, the frame fitted to every
        loss but the last (which ended the search and may be far off); returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.2), layout="tight")
        ax.plot(self.lrs, self.losses)
        ax.axvline(self.min_lr, color="grey", ls=":", label=f"lowest loss at lr {self.min_lr:.2g}")
        ax.axvline(self.suggestion, color="C3", ls="--", label=f"a tenth of it: {self.suggestion:.2g}")
        ax.set(xscale="log", xlabel="learning rate (log scale)", ylabel="training loss of the batch")
        kept = [x for x in self.losses[:-1] if math.isfinite(x)]  # the last loss ended the search
        if kept:
            low, high = min(kept), max(kept)
            ax.set_ylim(low - 0.05 * (high - low), high + 0.15 * (high - low))
        ax.legend()
        return ax
