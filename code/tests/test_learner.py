"""fromscratch.learner: hook order, cancellation, the same weights as a torch loop, metrics, lr_find."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fromscratch.learner import (
    Accuracy,
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    DeviceCB,
    Learner,
    LRFind,
    LRFinderCB,
    Mean,
    MetricsCB,
    ProgressCB,
    TrainCB,
    to_device,
    with_cbs,
)

N_TRAIN, N_VALID, BS = 70, 30, 16  # last batches partial: 70 = 4*16 + 6, 30 = 16 + 14


def make_data(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TRAIN + N_VALID, 5, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()  # three classes
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def make_dls(seed: int = 0, shuffle: bool = True) -> SimpleNamespace:
    x_train, y_train, x_valid, y_valid = make_data()
    gen = torch.Generator().manual_seed(seed)
    return SimpleNamespace(train=DataLoader(TensorDataset(x_train, y_train), BS, shuffle=shuffle,
                                            generator=gen),
                           valid=DataLoader(TensorDataset(x_valid, y_valid), BS))


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


class Recorder(Callback):
    """Records every hook it sees; raises `raise_at` (hook name -> exception) once per matching call."""

    HOOKS: ClassVar[list[str]] = [f"{when}_{what}" for what in ("fit", "epoch", "batch")
                                  for when in ("before", "after", "cleanup")]

    def __init__(self, raise_at: dict | None = None, when=lambda learn: True) -> None:
        self.events: list[tuple] = []
        self.raise_at, self.when = raise_at or {}, when
        for hook in self.HOOKS:
            setattr(self, hook, self._make(hook))

    def _make(self, hook):
        def record(learn):
            self.events.append((hook, learn.training) if "fit" not in hook else (hook,))
            if hook in self.raise_at and self.when(learn):
                raise self.raise_at[hook]()
        return record


def test_hooks_run_in_order_of_the_loop() -> None:
    rec = Recorder()
    learn = Learner(make_model(), make_dls(), lr=0.1, cbs=[TrainCB(), rec])
    learn.fit(1)
    batch = lambda t: [("before_batch", t), ("after_batch", t), ("cleanup_batch", t)]  # noqa: E731
    expected = ([("before_fit",)] + [("before_epoch", True)] + batch(True) * 5
                + [("after_epoch", True), ("cleanup_epoch", True), ("before_epoch", False)] + batch(False) * 2
                + [("after_epoch", False), ("cleanup_epoch", False), ("after_fit",), ("cleanup_fit",)])
    assert rec.events == expected


def test_callbacks_run_by_order_then_insertion() -> None:
    seen = []

    class Named(Callback):
        def __init__(self, name, order):
            self.name, self.order = name, order

        def before_fit(self, learn):
            seen.append(self.name)

    cbs = [Named("b", 1), Named("a", -1), Named("c", 1), TrainCB()]
    Learner(make_model(), make_dls(), cbs=cbs).fit(0)
    assert seen == ["a", "b", "c"]


def test_step_hooks_are_delegated_in_order() -> None:
    steps = []

    class Spy(Callback):
        order = 1

        def __getattr__(self, name):
            if name in ("predict", "get_loss", "backward", "step", "zero_grad"):
                return lambda learn: steps.append((name, learn.training))
            raise AttributeError(name)

    Learner(make_model(), make_dls(), cbs=[TrainCB(), Spy()]).fit(1)
    train_batch = [(s, True) for s in ("predict", "get_loss", "backward", "step", "zero_grad")]
    valid_batch = [("predict", False), ("get_loss", False)]
    assert steps == train_batch * 5 + valid_batch * 2
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        Learner(make_model(), make_dls()).nope  # noqa: B018


def test_cancel_batch_skips_that_batch_only() -> None:
    rec = Recorder({"before_batch": CancelBatchException},
                   when=lambda learn: learn.training and learn.iter == 1)
    model = make_model()
    learn = Learner(model, make_dls(shuffle=False), lr=0.1, cbs=[TrainCB(), rec])
    learn.fit(1)
    train = [e for e in rec.events if e[0].endswith("batch") and e[1]]
    assert train.count(("before_batch", True)) == 5 and train.count(("cleanup_batch", True)) == 5
    assert train.count(("after_batch", True)) == 4  # the cancelled batch has no after_batch
    # same weights as training on the other four batches only
    ref = make_model()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for i, (xb, yb) in enumerate(make_dls(shuffle=False).train):
        if i != 1:
            F.cross_entropy(ref(xb), yb).backward()
            opt.step()
            opt.zero_grad()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_cancel_epoch_skips_the_epoch_and_keeps_fitting() -> None:
    rec = Recorder({"before_epoch": CancelEpochException},
                   when=lambda learn: learn.training and learn.epoch == 0)
    learn = Learner(make_model(), make_dls(), cbs=[TrainCB(), rec])
    learn.fit(2)
    names = [e[0] for e in rec.events]
    assert names.count("before_epoch") == 4 and names.count("after_epoch") == 3
    assert names.count("cleanup_epoch") == 4
    assert names.count("before_batch") == 5 + 2 + 2  # epoch 0: valid only; epoch 1: train + valid
    assert names[-2:] == ["after_fit", "cleanup_fit"]


def test_cancel_fit_in_before_fit_ends_cleanly() -> None:
    rec = Recorder({"before_fit": CancelFitException})
    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    Learner(model, make_dls(), cbs=[TrainCB(), rec]).fit(3)  # returns normally
    assert rec.events == [("before_fit",), ("cleanup_fit",)]  # no epoch, no after_fit
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_an_error_propagates_after_cleanup() -> None:
    rec = Recorder({"after_batch": ZeroDivisionError})
    with pytest.raises(ZeroDivisionError):
        Learner(make_model(), make_dls(), cbs=[TrainCB(), rec]).fit(1)
    assert [e[0] for e in rec.events][-4:] == ["after_batch", "cleanup_batch", "cleanup_epoch", "cleanup_fit"]


def test_fit_cbs_are_only_for_that_fit() -> None:
    rec = Recorder()
    learn = Learner(make_model(), make_dls(), cbs=[TrainCB()])
    learn.fit(1, cbs=[rec])
    assert rec not in learn.cbs and len(learn.cbs) == 1
    n = len(rec.events)
    learn.fit(1)
    assert len(rec.events) == n


@pytest.mark.parametrize("opt_func", [torch.optim.SGD, torch.optim.Adam])
def test_one_epoch_equals_a_hand_written_torch_loop(opt_func) -> None:
    model = make_model(seed=3)
    learn = Learner(model, make_dls(seed=7), F.cross_entropy, lr=0.05, cbs=[TrainCB()], opt_func=opt_func)
    learn.fit(1, valid=False)

    ref = make_model(seed=3)
    opt = opt_func(ref.parameters(), lr=0.05)
    for xb, yb in make_dls(seed=7).train:
        loss = F.cross_entropy(ref(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
    start = make_model(seed=3).parameters()
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), start, strict=True))  # it trained
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_fit_lr_overrides_the_learner_lr() -> None:
    learn = Learner(make_model(), make_dls(), lr=0.1, cbs=[TrainCB()])
    learn.fit(1, lr=0.02)
    assert learn.opt.param_groups[0]["lr"] == 0.02 and learn.lr == 0.1


def test_validation_pass_has_no_gradients_and_eval_mode() -> None:
    modes = []

    class Check(Callback):
        def after_batch(self, learn):
            modes.append((learn.training, learn.model.training, learn.loss.requires_grad))

    Learner(make_model(), make_dls(), cbs=[TrainCB(), Check()]).fit(1)
    assert set(modes) == {(True, True, True), (False, False, False)}


def test_metrics_accuracy_equals_direct_accuracy_with_a_partial_batch() -> None:
    metrics = MetricsCB(accuracy=Accuracy())
    metrics.log = lambda row: None
    model = make_model()
    learn = Learner(model, make_dls(), cbs=[TrainCB(), metrics])
    learn.fit(1, train=False)  # valid only: 16 + 14 rows, weights unchanged
    _, _, x_valid, y_valid = make_data()
    with torch.no_grad():
        logits = model(x_valid)
    direct_acc = (logits.argmax(1) == y_valid).float().mean().item()
    direct_loss = F.cross_entropy(logits, y_valid).item()
    (row,) = metrics.history
    assert row["split"] == "valid" and row["epoch"] == 0
    assert row["accuracy"] == pytest.approx(direct_acc, abs=1e-7)
    assert row["loss"] == pytest.approx(direct_loss, rel=1e-6)
    batch_mean = sum(F.cross_entropy(model(x), y).item() for x, y in learn.dls.valid) / 2
    assert row["loss"] != pytest.approx(batch_mean, rel=1e-6)  # the weighting matters on this data


@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_accumulators_match_one_computation_over_all_rows(sizes, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    preds = torch.randn(sum(sizes), 4, generator=g)
    target = torch.randint(0, 4, (sum(sizes),), generator=g)
    acc, mean = Accuracy(), Mean()
    for p, t in zip(preds.split(sizes), target.split(sizes), strict=True):
        acc.update(p, t)
        mean.update(F.cross_entropy(p, t), weight=len(t))
    assert acc.compute() == pytest.approx((preds.argmax(1) == target).double().mean().item(), abs=1e-12)
    assert mean.compute() == pytest.approx(F.cross_entropy(preds, target).item(), rel=1e-5)


def test_metric_refusals() -> None:
    with pytest.raises(ValueError, match="no values"):
        Mean().compute()
    with pytest.raises(ValueError, match="target's shape"):
        Accuracy().update(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="reset"):
        MetricsCB(acc=lambda p, t: 0)


def test_metrics_rows_per_split_and_epoch() -> None:
    logged = []
    metrics = MetricsCB(Accuracy())
    metrics.log = logged.append
    Learner(make_model(), make_dls(), cbs=[TrainCB(), metrics]).fit(2)
    assert [(r["epoch"], r["split"]) for r in logged] == [(0, "train"), (0, "valid"), (1, "train"),
                                                          (1, "valid")]
    assert logged == metrics.history and set(logged[0]) == {"epoch", "split", "loss", "accuracy"}


def test_progress_records_losses_outside_a_notebook() -> None:
    progress, metrics = ProgressCB(), MetricsCB(accuracy=Accuracy())
    original_log = metrics.log
    learn = Learner(make_model(), make_dls(), cbs=[TrainCB(), metrics, progress])
    learn.fit(2)
    assert len(progress.train_losses) == 10 and len(progress.valid_losses) == 2
    assert [x for x, _ in progress.valid_losses] == [5, 10]
    assert progress.valid_losses[-1][1] == pytest.approx(metrics.history[-1]["loss"], rel=1e-6)
    assert progress.rows == metrics.history and metrics.log is original_log
    fig = progress.figure()
    assert len(fig.axes[0].lines) == 2


def test_lr_find_restores_weights_and_stops_on_divergence() -> None:
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learn = Learner(model, make_dls(), cbs=[TrainCB()])
    found = learn.lr_find(start_lr=1e-4, gamma=1.5, max_mult=3, plot=False)
    assert isinstance(found, LRFind)
    lrs, losses = found
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert lrs[0] == pytest.approx(1e-4)
    assert all(b / a == pytest.approx(1.5) for a, b in itertools.pairwise(lrs))
    last, best_before = losses[-1], min(losses[:-1])
    assert math.isnan(last) or last > 3 * min(losses)  # stopped by the rule, on the batch that broke it
    assert all(x <= 3 * best_before for x in losses[:-1])
    assert found.suggestion == pytest.approx(found.min_lr / 10)
    assert losses[lrs.index(found.min_lr)] == min(losses)
    assert learn.cbs == learn.cbs[:1]  # the finder was only for that fit


def test_lr_finder_restores_a_model_without_state_dict() -> None:
    class Bare:
        def __init__(self):
            self.w = torch.zeros(5, 3, requires_grad=True)

        def parameters(self):
            return [self.w]

        def __call__(self, x):
            return x @ self.w

    model = Bare()
    Learner(model, make_dls(), cbs=[TrainCB()]).fit(2, valid=False, cbs=[LRFinderCB(gamma=3)], lr=0.1)
    assert torch.equal(model.w, torch.zeros(5, 3))


def test_device_cb_moves_model_and_nested_batches() -> None:
    assert to_device({"a": [torch.ones(1)], "b": 3}, "cpu")["b"] == 3
    seen = []

    class Look(Callback):
        def before_batch(self, learn):
            seen.append(learn.batch[0].device.type)

    Learner(make_model(), make_dls(), cbs=[TrainCB(), Look(), DeviceCB("cpu")]).fit(1)
    assert set(seen) == {"cpu"} and len(seen) == 7


def test_with_cbs_refuses_unknown_levels() -> None:
    with pytest.raises(ValueError, match="one of fit, epoch, batch"):
        with_cbs("step")


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"lr": 0}, ValueError, "lr must be a positive"),
    ({"lr": -1e-3}, ValueError, "lr must be a positive"),
    ({"lr": float("nan")}, ValueError, "lr must be a positive"),
    ({"cbs": [object()]}, TypeError, "no numeric `order`"),
    ({"cbs": [TrainCB]}, TypeError, r"TrainCB\(\) instead of TrainCB"),
    ({"dls": [1, 2]}, TypeError, "needs .train and .valid"),
    ({"model": "not a model"}, TypeError, "callable and have parameters"),
    ({"loss_func": 3}, TypeError, "must be callables"),
])
def test_bad_constructor_arguments(kwargs, error, match) -> None:
    args = {"model": make_model(), "dls": make_dls(), **kwargs}
    with pytest.raises(error, match=match):
        Learner(**args)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_epochs": -1}, "n_epochs must be a whole number"),
    ({"n_epochs": 1.5}, "n_epochs must be a whole number"),
    ({"n_epochs": 1, "lr": 0.0}, "lr must be a positive"),
])
def test_bad_fit_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        Learner(make_model(), make_dls(), cbs=[TrainCB()]).fit(**kwargs)


def test_fit_without_a_training_step_says_what_to_add() -> None:
    with pytest.raises(ValueError, match=r"add TrainCB\(\)"):
        Learner(make_model(), make_dls()).fit(1)
    with pytest.raises(ValueError, match="gamma and max_mult must be > 1"):
        Learner(make_model(), make_dls(), cbs=[TrainCB()]).lr_find(gamma=1.0)


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_fits_fromscratch_nn_and_data_like_torch(opt_name) -> None:
    """The package's own Module, optimizers and DataLoaders train under the Learner as torch's do."""
    from fromscratch import data as fdata
    from fromscratch import nn as fnn

    ref = make_model(seed=4)
    ours = fnn.Sequential(fnn.Linear(5, 8), fnn.ReLU(), fnn.Linear(8, 3))
    with torch.no_grad():
        for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
            p.copy_(q)
    x_train, y_train, x_valid, y_valid = make_data()

    def our_dls():
        return fdata.DataLoaders.from_datasets(fdata.TensorDataset(x_train, y_train),
                                               fdata.TensorDataset(x_valid, y_valid), BS,
                                               generator=torch.Generator().manual_seed(5))

    dls = our_dls()
    metrics = MetricsCB(accuracy=Accuracy())
    metrics.log = lambda row: None
    learn = Learner(ours, dls, F.cross_entropy, lr=0.05, cbs=[TrainCB(), metrics],
                    opt_func=getattr(fnn, opt_name))
    found = learn.lr_find(plot=False)
    assert len(found.lrs) > 1 and all(torch.equal(p, q) for p, q in
                                      zip(ours.parameters(), ref.parameters(), strict=True))
    learn.dls = our_dls()  # the finder drew shuffles from the first one's generator
    learn.fit(2)

    opt = getattr(torch.optim, opt_name)(ref.parameters(), lr=0.05)
    train = make_dls(seed=5).train
    for _ in range(2):
        for xb, yb in train:
            F.cross_entropy(ref(xb), yb).backward()
            opt.step()
            opt.zero_grad()
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-6)
    assert [row["split"] for row in metrics.history] == ["train", "valid"] * 2


@given(st.integers(3, 40), st.integers(1, 12), st.integers(0, 3), st.floats(1e-3, 0.5),
       st.integers(0, 2**31 - 1))
def test_learner_weights_equal_a_torch_loop_for_any_sizes(n_rows, batch_size, epochs, lr, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n_rows, 5, generator=g), torch.randint(0, 3, (n_rows,), generator=g)

    def loaders():
        train = DataLoader(TensorDataset(x, y), batch_size, shuffle=True,
                           generator=torch.Generator().manual_seed(seed))
        return SimpleNamespace(train=train, valid=DataLoader(TensorDataset(x, y), batch_size))

    model, ref = make_model(seed % 7), make_model(seed % 7)
    Learner(model, loaders(), lr=lr, cbs=[TrainCB()]).fit(epochs)
    opt = torch.optim.SGD(ref.parameters(), lr=lr)
    train = loaders().train
    for _ in range(epochs):
        for xb, yb in train:
            F.cross_entropy(ref(xb), yb).backward()
            opt.step()
            opt.zero_grad()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q)


def test_progress_in_a_notebook_keeps_only_the_final_picture_and_table(monkeypatch) -> None:
    import IPython.display

    from fromscratch import learner as learner_module

    class Handle:
        def __init__(self, obj):
            self.shown = [obj]

        def update(self, obj):
            self.shown.append(obj)

    handles = []

    def fake_display(obj, display_id=False):
        handles.append(Handle(obj))
        return handles[-1]

    monkeypatch.setattr(learner_module, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", fake_display)
    metrics = MetricsCB(accuracy=Accuracy())
    Learner(make_model(), make_dls(), cbs=[TrainCB(), metrics, ProgressCB()]).fit(2)
    figure, table = handles
    assert isinstance(figure.shown[-1], IPython.display.Image)
    assert figure.shown[-1].data.startswith(b"\x89PNG")
    final_table = table.shown[-1].data
    assert len(final_table.splitlines()) == 2 + 4 and "| 1 | valid |" in final_table  # header, rule, 4 rows
    assert metrics.log is print  # given back after the fit
