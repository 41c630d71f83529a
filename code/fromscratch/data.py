"""Datasets, samplers, collation and DataLoader written out, batch for batch as torch.utils.data.

    split = fromscratch.datasets.load("digits")
    dls = DataLoaders.from_split(split, batch_size=64, generator=torch.Generator().manual_seed(0))
    for xb, yb in dls.train: ...             # shuffled every epoch; dls.valid in order

A DataLoader asks its batch sampler for lists of indices, fetches those items from the dataset and
collates them into one batch. With the same seeded generator, `DataLoader(..., shuffle=True)` gives
the same batches in the same order as torch's: each pass first draws one int64 from the generator
(torch's base seed for workers), then RandomSampler draws `randperm(n)` from it.
"""

from __future__ import annotations

import collections
import multiprocessing
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor


# --------------------------------------------------------------------------- datasets
@runtime_checkable
class Dataset(Protocol):
    """Anything with a length and integer indexing: a list, a TensorDataset, a Hugging Face Dataset."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


class TensorDataset:
    """Rows of tensors that share their first dimension: dataset[i] = (x[i], y[i], ...)."""

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        lengths = {len(t) for t in tensors}
        if len(lengths) != 1:
            raise ValueError(f"TensorDataset's tensors need one first dimension, got lengths "
                             f"{[len(t) for t in tensors]}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)


# --------------------------------------------------------------------------- samplers
class SequentialSampler:
    """Indices 0, 1, ..., len(data) - 1."""

    def __init__(self, data_source: Dataset) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler:
    """A fresh permutation of the indices on every pass, drawn as torch's RandomSampler draws it.

    With a generator: `randperm(n, generator)`, then at the end of the pass a second `randperm`
    that torch draws for the remainder, num_samples % n, which is 0 here (num_samples is always n),
    so the generator advances as torch's does. Without one: a seed is first drawn from torch's
    global generator.
    """

    def __init__(self, data_source: Dataset, generator: torch.Generator | None = None) -> None:
        if len(data_source) == 0:
            raise ValueError("RandomSampler got an empty dataset; nothing to shuffle")
        self.data_source, self.generator = data_source, generator

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        generator = self.generator
        if generator is None:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator().manual_seed(seed)
        yield from torch.randperm(n, generator=generator).tolist()
        torch.randperm(n, generator=generator)  # torch's remainder draw: keeps the generators in step

    def __len__(self) -> int:
        return len(self.data_source)


class BatchSampler:
    """Lists of `batch_size` indices from `sampler`; the last one shorter unless drop_last."""

    def __init__(self, sampler: Iterable[int], batch_size: int, drop_last: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size should be a positive integer, got {batch_size!r}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a bool, got {drop_last!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# --------------------------------------------------------------------------- collation
def default_collate(batch: Sequence[Any]) -> Any:
    """Stack a list of samples into a batch, recursively, as torch's default_collate.

    Tensors and numpy arrays are stacked along a new first dimension; floats become a float64
    tensor and ints (and bools) an int64 (bool) tensor; strings are left as they come; dicts are collated
    key by key; a tuple of fields becomes a list of collated fields (a namedtuple stays one).
    """
    elem = batch[0]
    if isinstance(elem, Tensor):
        return torch.stack(tuple(batch), 0)
    if isinstance(elem, np.ndarray | np.generic):
        if elem.dtype.char in "SaUO":
            raise TypeError(f"default_collate cannot stack numpy arrays of dtype {elem.dtype}; "
                            "convert them to numbers first")
        return torch.as_tensor(np.asarray(batch)) if elem.shape == () else \
            default_collate([torch.as_tensor(b) for b in batch])
    if isinstance(elem, float):
        return torch.tensor(batch, dtype=torch.float64)
    if isinstance(elem, int):
        return torch.tensor(batch)
    if isinstance(elem, str | bytes):
        return batch  # as torch: the list (or, inside a tuple, the tuple) of strings unchanged
    if isinstance(elem, Mapping):
        merged = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            return type(elem)(merged)
        except TypeError:  # a Mapping that cannot be built from a dict
            return merged
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(field) for field in zip(*batch, strict=True)))
    if isinstance(elem, Sequence):
        if len({len(sample) for sample in batch}) != 1:
            raise RuntimeError("each element in list of batch should be of equal size")
        fields = [default_collate(field) for field in zip(*batch, strict=True)]
        if isinstance(elem, tuple):
            return fields
        try:
            return type(elem)(fields)
        except TypeError:
            return fields
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
                    f"found {type(elem)}")


def collate_dict(keys: Iterable[str] | Any) -> Callable[[Sequence[Mapping]], tuple]:
    """A collate_fn for dict samples (a Hugging Face dataset): a tuple of the collated fields.

    `keys` is a list of field names, or a Hugging Face Dataset (its features, in order). Used with
    `dataset.with_transform(...)`, whose transform turns each field into tensors.
    """
    names = list(keys.features) if hasattr(keys, "features") else list(keys)
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError(f"collate_dict needs field names (strings), got {names!r}")

    def collate(batch: Sequence[Mapping]) -> tuple:
        merged = default_collate([{name: sample[name] for name in names} for sample in batch])
        return tuple(merged[name] for name in names)

    return collate


# --------------------------------------------------------------------------- the loader
def fetch(dataset: Dataset, indices: list[int]) -> list[Any]:
    """The samples at `indices`, in one call where the dataset offers __getitems__ (as torch)."""
    getitems = getattr(dataset, "__getitems__", None)
    return getitems(indices) if getitems is not None else [dataset[i] for i in indices]


class DataLoader:
    """Batches of a dataset: samples in order or shuffled, collated, optionally in worker processes.

    Same arguments as torch.utils.data.DataLoader for these features. `num_workers > 0` fetches and
    collates in that many processes (a pool started on each pass, stopped at its end or when the
    pass is abandoned, once the batches already asked for are in) and yields the batches in order;
    each worker seeds torch and `random` with base_seed + worker id, as torch's workers do (which
    worker gets which batch is not fixed, so random transforms in workers are not reproducible).
    Refusals: an empty dataset (torch's sequential loader yields nothing instead), batch_size < 1,
    and the combinations torch refuses.
    """

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool = False,
                 sampler: Iterable[int] | None = None, batch_sampler: Iterable[list[int]] | None = None,
                 num_workers: int = 0, collate_fn: Callable[[list], Any] | None = None,
                 drop_last: bool = False, generator: torch.Generator | None = None,
                 worker_init_fn: Callable[[int], None] | None = None, prefetch_factor: int = 2,
                 multiprocessing_context: str | None = None) -> None:
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader needs a dataset with __len__ and __getitem__, got "
                            f"{type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("DataLoader got an empty dataset; there is nothing to batch")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers should be a non-negative integer, got {num_workers!r}")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle; shuffle inside the sampler")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, "
                                 "sampler, and drop_last")
            batch_size = None
        elif batch_size is None:
            raise ValueError("batch_size=None (no batching) is not supported; use batch_size=1")
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler, self.generator = sampler, batch_sampler, generator
        self.collate_fn = collate_fn or default_collate
        self.num_workers, self.worker_init_fn = num_workers, worker_init_fn
        self.prefetch_factor, self.multiprocessing_context = prefetch_factor, multiprocessing_context

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[Any]:
        # torch draws its workers' base seed from the generator before the sampler draws anything
        base_seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        if self.num_workers == 0:
            for indices in self.batch_sampler:
                yield self.collate_fn(fetch(self.dataset, indices))
        else:
            yield from self._parallel(base_seed)

    def _parallel(self, base_seed: int) -> Iterator[Any]:
        context = multiprocessing.get_context(self.multiprocessing_context)
        ids = context.SimpleQueue()
        for worker_id in range(self.num_workers):
            ids.put(worker_id)
        pool = context.Pool(self.num_workers, initializer=_start_worker,
                            initargs=(self.dataset, self.collate_fn, base_seed, ids, self.worker_init_fn))
        pending: collections.deque = collections.deque()
        try:
            for indices in self.batch_sampler:
                pending.append(pool.apply_async(_work, (indices,)))
                if len(pending) >= self.num_workers * self.prefetch_factor:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()
        finally:
            # Batches still in flight are waited for before the pool stops: torch sends each
            # batch's tensors as a file descriptor that the worker serves, so a worker stopped
            # mid-handover breaks the pool's result thread.
            for result in pending:
                result.wait()
            pool.terminate()
            pool.join()

    def __repr__(self) -> str:
        return (f"DataLoader({len(self.dataset)} items, batch_size={self.batch_size}, "
                f"{len(self)} batches, sampler={type(self.sampler).__name__}, "
                f"num_workers={self.num_workers})")


_WORKER: dict[str, Any] = {}


def _start_worker(dataset: Dataset, collate_fn: Callable, base_seed: int, ids: Any,
                  worker_init_fn: Callable[[int], None] | None) -> None:
    """In each worker process: one thread, seeds from base_seed + worker id, the dataset kept."""
    worker_id = ids.get()
    torch.set_num_threads(1)
    seed = base_seed + worker_id
    torch.manual_seed(seed)
    random.seed(seed)
    _WORKER.update(dataset=dataset, collate_fn=collate_fn)
    if worker_init_fn is not None:
        worker_init_fn(worker_id)


def _work(indices: list[int]) -> Any:
    return _WORKER["collate_fn"](fetch(_WORKER["dataset"], indices))


# --------------------------------------------------------------------------- train and valid
class DataLoaders:
    """A training loader and a validation loader: `.train` and `.valid`."""

    def __init__(self, train: Iterable, valid: Iterable) -> None:
        self.train, self.valid = train, valid

    @classmethod
    def from_datasets(cls, train: Dataset, valid: Dataset, batch_size: int, *,
                      valid_batch_size: int | None = None, generator: torch.Generator | None = None,
                      **kwargs: Any) -> DataLoaders:
        """Train shuffled (with `generator`), valid in order; other arguments go to both loaders."""
        return cls(DataLoader(train, batch_size, shuffle=True, generator=generator, **kwargs),
                   DataLoader(valid, valid_batch_size or batch_size, shuffle=False, **kwargs))

    @classmethod
    def from_split(cls, split: Any, batch_size: int, **kwargs: Any) -> DataLoaders:
        """From a fromscratch.datasets.DataSplit: batches (x, y) of its tensors."""
        return cls.from_datasets(TensorDataset(split.x_train, split.y_train),
                                 TensorDataset(split.x_valid, split.y_valid), batch_size, **kwargs)

    @classmethod
    def from_dataset_dict(cls, dataset_dict: Mapping[str, Any], batch_size: int, *, train: str = "train",
                          valid: str = "test", **kwargs: Any) -> DataLoaders:
        """From a Hugging Face DatasetDict (after with_transform); batches are tuples of its fields."""
        for name in (train, valid):
            if name not in dataset_dict:
                raise ValueError(f"the dataset dict has no split {name!r}; its splits: "
                                 f"{', '.join(dataset_dict)}; pass train= / valid=")
        kwargs.setdefault("collate_fn", collate_dict(dataset_dict[train]))
        return cls.from_datasets(dataset_dict[train], dataset_dict[valid], batch_size, **kwargs)

    def __repr__(self) -> str:
        return f"DataLoaders(train={self.train!r}, valid={self.valid!r})"
