"""fromscratch.data: the same batches as torch.utils.data, collation as torch's, workers, refusals."""

from __future__ import annotations

import collections
import multiprocessing

import numpy as np
import pytest
import torch
import torch.utils.data as tud
from property_helpers import assert_same_structure
from torch.utils.data import default_collate as torch_collate

from fromscratch import data, datasets


def tensor_data(n: int = 23):
    x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    return x, torch.arange(n) % 4


def assert_same_batches(ours, theirs) -> None:
    ours, theirs = list(ours), list(theirs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            assert u.dtype == v.dtype and torch.equal(u, v)


@pytest.mark.parametrize("n,batch_size,drop_last", [(23, 5, False), (23, 5, True), (20, 5, False),
                                                    (3, 8, False), (1, 1, True)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_same_batches_in_the_same_order_as_torch(n, batch_size, drop_last, shuffle) -> None:
    x, y = tensor_data(n)
    ours = data.DataLoader(data.TensorDataset(x, y), batch_size, shuffle=shuffle, drop_last=drop_last,
                           generator=torch.Generator().manual_seed(7))
    theirs = tud.DataLoader(tud.TensorDataset(x, y), batch_size, shuffle=shuffle, drop_last=drop_last,
                            generator=torch.Generator().manual_seed(7))
    assert len(ours) == len(theirs)
    for _ in range(3):  # epochs: the generator advances alike
        assert_same_batches(ours, theirs)


def test_last_partial_batch_and_drop_last() -> None:
    x, y = tensor_data(23)
    sizes = [len(xb) for xb, _ in data.DataLoader(data.TensorDataset(x, y), 5)]
    assert sizes == [5, 5, 5, 5, 3]
    assert [len(xb) for xb, _ in data.DataLoader(data.TensorDataset(x, y), 5, drop_last=True)] == [5] * 4


def test_shuffle_without_a_generator_follows_torchs_global_seed() -> None:
    x, y = tensor_data(17)
    torch.manual_seed(3)
    ours = [b[1] for b in data.DataLoader(data.TensorDataset(x, y), 4, shuffle=True)]
    torch.manual_seed(3)
    theirs = [b[1] for b in tud.DataLoader(tud.TensorDataset(x, y), 4, shuffle=True)]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert sorted(torch.cat(ours).tolist()) == sorted(y.tolist())


def test_samplers_equal_torchs() -> None:
    items = list(range(11))
    assert list(data.SequentialSampler(items)) == list(tud.SequentialSampler(items))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    ours, theirs = data.RandomSampler(items, generator=g1), tud.RandomSampler(items, generator=g2)
    for _ in range(3):
        assert list(ours) == list(theirs)
    for drop_last in (False, True):
        mine = data.BatchSampler(range(11), 4, drop_last)
        torchs = tud.BatchSampler(range(11), 4, drop_last)
        assert list(mine) == list(torchs) and len(mine) == len(torchs)


NT = collections.namedtuple("NT", "a b")
SAMPLES = [
    [torch.ones(2, 3), torch.zeros(2, 3)],
    [1.5, 2.0, -1.0],
    [1, 2, 3],
    [True, False],
    ["a", "bc"],
    [np.arange(3), np.arange(3) * 2],
    [np.float32(1.5), np.float32(2.5)],
    [(torch.ones(2), 1), (torch.zeros(2), 0)],
    [{"x": torch.ones(2), "y": 1, "name": "p"}, {"x": torch.zeros(2), "y": 0, "name": "q"}],
    [{"inner": (1.0, [2, 3])}, {"inner": (4.0, [5, 6])}],
    [NT(1, torch.ones(1)), NT(2, torch.zeros(1))],
    [[1, 2], [3, 4]],
]


@pytest.mark.parametrize("batch", SAMPLES, ids=range(len(SAMPLES)))
def test_default_collate_equals_torchs(batch) -> None:
    assert_same_structure(data.default_collate(batch), torch_collate(batch))


def test_collate_refusals() -> None:
    with pytest.raises(RuntimeError, match="equal size"):
        data.default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="found"):
        data.default_collate([object(), object()])


def test_workers_give_the_same_batches_in_order() -> None:
    x, y = tensor_data(37)
    kwargs = {"batch_size": 4, "shuffle": True}

    def seeded():
        return torch.Generator().manual_seed(1)

    serial = data.DataLoader(data.TensorDataset(x, y), generator=seeded(), **kwargs)
    parallel = data.DataLoader(data.TensorDataset(x, y), num_workers=2, generator=seeded(), **kwargs)
    reference = tud.DataLoader(tud.TensorDataset(x, y), generator=seeded(), **kwargs)
    for _ in range(2):  # two epochs: the same order as the serial loader and as torch's
        batches = list(parallel)
        assert_same_batches(batches, serial)
        assert_same_batches(batches, reference)


def test_abandoning_a_pass_shuts_its_workers_down() -> None:
    x, y = tensor_data(37)
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=2, num_workers=2)
    before = set(multiprocessing.active_children())
    for _ in range(20):  # a worker stopped while handing over a tensor failed about 1 close in 6
        stopped = iter(loader)
        assert next(stopped)[0].shape == (2, 3)
        stopped.close()
        assert set(multiprocessing.active_children()) == before


def test_hugging_face_dataset_with_transform() -> None:
    hf = pytest.importorskip("datasets")
    table = hf.Dataset.from_dict({"image": [[[i, i + 1], [i + 2, i + 3]] for i in range(10)],
                                  "label": [i % 3 for i in range(10)]})

    def to_tensors(batch):
        return {"image": [torch.tensor(im, dtype=torch.float32) / 10 for im in batch["image"]],
                "label": batch["label"]}

    ds = table.with_transform(to_tensors)
    loader = data.DataLoader(ds, batch_size=4, collate_fn=data.collate_dict(ds))
    batches = list(loader)
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    xb, yb = batches[0]
    expected = torch.tensor([[[i, i + 1], [i + 2, i + 3]] for i in range(4)], dtype=torch.float32) / 10
    torch.testing.assert_close(xb, expected)
    assert torch.equal(yb, torch.tensor([0, 1, 2, 0]))
    theirs = tud.DataLoader(ds, batch_size=4, collate_fn=data.collate_dict(ds))
    assert_same_batches(loader, theirs)
    dls = data.DataLoaders.from_dataset_dict(hf.DatasetDict(train=ds, test=ds), 3)
    assert [len(b[0]) for b in dls.valid] == [3, 3, 3, 1]
    with pytest.raises(ValueError, match="no split 'valid'"):
        data.DataLoaders.from_dataset_dict(hf.DatasetDict(train=ds), 3, valid="valid")


def test_dataloaders_from_a_split_of_digits() -> None:
    split = datasets.load("digits", limit=100)
    dls = data.DataLoaders.from_split(split, 32, generator=torch.Generator().manual_seed(0))
    xb, yb = next(iter(dls.train))
    assert xb.shape == (32, split.n_features) and yb.dtype == torch.int64
    assert torch.equal(torch.cat([x for x, _ in dls.valid]), split.x_valid)  # valid: in order
    assert len(dls.train) == -(-len(split.x_train) // 32)


def test_refusals_are_one_line() -> None:
    x, y = tensor_data(5)
    ds = data.TensorDataset(x, y)
    cases = [(lambda: data.DataLoader([], 2), "empty dataset"),
             (lambda: data.DataLoader(ds, 0), "positive integer"),
             (lambda: data.DataLoader(ds, -3), "positive integer"),
             (lambda: data.DataLoader(ds, 2, shuffle=True, sampler=range(5)), "mutually exclusive"),
             (lambda: data.DataLoader(ds, 2, batch_sampler=[[0, 1]]), "mutually exclusive"),
             (lambda: data.DataLoader(ds, 2, num_workers=-1), "non-negative"),
             (lambda: data.RandomSampler([]), "empty"),
             (lambda: data.TensorDataset(x, y[:3]), "one first dimension")]
    for make, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            make()
        assert "\n" not in str(error.value)
    with pytest.raises(TypeError, match="__len__"):
        data.DataLoader(iter(range(3)), 2)


def test_a_batch_sampler_alone_drives_the_loader() -> None:
    x, y = tensor_data(6)
    loader = data.DataLoader(data.TensorDataset(x, y), batch_sampler=[[5, 0], [1, 2, 3]])
    assert [b[1].tolist() for b in loader] == [[1, 0], [1, 2, 3]]
