"""Image classification data as normalised tensors: scikit-learn's digits offline, MNIST-like sets from HF.

    split = load("digits")                     # offline, ships with scikit-learn (8x8 handwriting)
    split = load("fashion_mnist")              # Hugging Face hub (gpu profile)
    split = load("/path/saved_with_save_to_disk")   # or a folder of parquet files, or a .parquet file

Every loader returns a `DataSplit`: flattened float images standardised with the training set's
mean and standard deviation, integer labels, and a train/valid split.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

HUB_IDS = {"fashion_mnist": "zalando-datasets/fashion_mnist", "mnist": "ylecun/mnist"}


@dataclass
class DataSplit:
    """Training and validation tensors of one dataset, with what it takes to show them again."""

    x_train: Tensor
    y_train: Tensor
    x_valid: Tensor
    y_valid: Tensor
    classes: tuple[str, ...]
    image_shape: tuple[int, ...]
    name: str
    mean: float = 0.0
    std: float = 1.0
    source: str = field(default="", repr=False)

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to(self, device: str | torch.device) -> DataSplit:
        """The same split with every tensor on `device`."""
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_valid=self.x_valid.to(device), y_valid=self.y_valid.to(device))

    def images(self, x: Tensor) -> Tensor:
        """Rows of `x` (normalised, flattened) back to images in [0, 1] of shape image_shape."""
        return (x.detach().cpu() * self.std + self.mean).clamp(0, 1).reshape(-1, *self.image_shape)

    def __repr__(self) -> str:
        return (f"DataSplit({self.name!r}: train {tuple(self.x_train.shape)}, valid "
                f"{tuple(self.x_valid.shape)}, {self.n_classes} classes, images {self.image_shape})")


def load(name: str = "digits", *, valid_fraction: float = 0.2, seed: int = 0, limit: int | None = None,
         dtype: torch.dtype = torch.float32) -> DataSplit:
    """Load a dataset by name ('digits', 'fashion_mnist', 'mnist', a hub id) or local path."""
    if name == "digits":
        return load_digits(valid_fraction=valid_fraction, seed=seed, limit=limit, dtype=dtype)
    return load_hf_images(name, valid_fraction=valid_fraction, seed=seed, limit=limit, dtype=dtype)


def load_digits(*, valid_fraction: float = 0.2, seed: int = 0, limit: int | None = None,
                dtype: torch.dtype = torch.float32) -> DataSplit:
    """scikit-learn's 1,797 handwritten digits (8x8, ink 0..16), shuffled and split."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = digits.images.astype(np.float32) / 16.0
    x_train, y_train, x_valid, y_valid = _random_split(images, digits.target, valid_fraction, seed)
    return _make_split(x_train, y_train, x_valid, y_valid, tuple(str(c) for c in digits.target_names),
                       "digits", "sklearn.datasets.load_digits", limit, dtype)


def load_hf_images(source: str, *, image_column: str = "image", label_column: str = "label",
                   train_split: str = "train", valid_split: str = "test", valid_fraction: float = 0.2,
                   seed: int = 0, limit: int | None = None, dtype: torch.dtype = torch.float32
                   ) -> DataSplit:
    """A Hugging Face image-classification dataset (MNIST, Fashion-MNIST...) as a DataSplit.

    `source` is a short name ('fashion_mnist', 'mnist'), a hub id, a folder written by
    `Dataset(Dict).save_to_disk`, a folder of parquet files or one parquet file. Its
    `valid_split` becomes the validation set; without one, `valid_fraction` of train is held out.
    `limit` keeps a random subset of at most that many rows per split.
    """
    _check_fraction(valid_fraction)
    dataset = _open_hf(source)
    if train_split not in dataset:
        raise ValueError(f"{source!r} has no split {train_split!r}; its splits: {', '.join(dataset)}")
    train = dataset[train_split]
    for column in (image_column, label_column):
        if column not in train.column_names:
            raise ValueError(f"{source!r} has no column {column!r}; columns: "
                             f"{', '.join(train.column_names)}; pass image_column= / label_column=")
    x_train, y_train = _hf_arrays(train, image_column, label_column)
    if valid_split in dataset:
        x_valid, y_valid = _hf_arrays(dataset[valid_split], image_column, label_column)
    else:
        x_train, y_train, x_valid, y_valid = _random_split(x_train, y_train, valid_fraction, seed)
    classes = _class_names(train.features[label_column], int(y_train.max()) + 1)
    name = Path(source).name if Path(source).exists() else source.rsplit("/", 1)[-1]
    return _make_split(x_train, y_train, x_valid, y_valid, classes, name, source, limit, dtype, seed)


# --------------------------------------------------------------------------- helpers
def _open_hf(source: str):
    """A DatasetDict from disk (save_to_disk folder, parquet) or from the hub, without progress bars."""
    with warnings.catch_warnings():  # tqdm warns about ipywidgets when imported in a notebook
        warnings.simplefilter("ignore")
        import datasets
    datasets.disable_progress_bars()

    path = Path(source)
    if path.is_file() and path.suffix == ".parquet":
        return datasets.load_dataset("parquet", data_files={"train": str(path)})
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
            loaded = datasets.load_from_disk(str(path))
            return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict(train=loaded)
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise ValueError(f"{source} holds neither a save_to_disk dataset nor parquet files")
        splits = {f.stem.split("-")[0]: str(f) for f in files}
        return datasets.load_dataset("parquet", data_files=splits)
    hub_id = HUB_IDS.get(source, source)
    try:
        return datasets.load_dataset(hub_id)
    except Exception as error:  # offline, unknown id, gated: all mean "not loadable here"
        raise RuntimeError(f"could not load {hub_id!r} from the Hugging Face hub ({type(error).__name__}); "
                           "use 'digits' offline, or a local save_to_disk / parquet path") from error


def _hf_arrays(split, image_column: str, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 arrays in [0, 1] (N, H, W[, C]) and labels as int64, decoded in one go."""
    data = split.with_format("numpy")[:]
    images = np.asarray(data[image_column])
    if images.dtype == object:  # images of different sizes cannot be stacked
        raise ValueError("images differ in size; resize them to one shape first")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    return images.astype(np.float32) / scale, np.asarray(data[label_column]).astype(np.int64)


def _class_names(feature, n_classes: int) -> tuple[str, ...]:
    names = getattr(feature, "names", None)
    return tuple(names) if names else tuple(str(i) for i in range(n_classes))


def _random_split(x: np.ndarray, y: np.ndarray, valid_fraction: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with `seed` and hold out `valid_fraction` of the rows."""
    _check_fraction(valid_fraction)
    order = np.random.default_rng(seed).permutation(len(x))
    n_valid = max(1, round(len(x) * valid_fraction))
    valid, train = order[:n_valid], order[n_valid:]
    return x[train], y[train], x[valid], y[valid]


def _make_split(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
                classes: tuple[str, ...], name: str, source: str, limit: int | None,
                dtype: torch.dtype, seed: int = 0) -> DataSplit:
    """Subsample to `limit`, flatten, standardise with the training mean and std, make tensors."""
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be a positive number of rows, got {limit}")
        rng = np.random.default_rng(seed + 1)
        keep_train = np.sort(rng.permutation(len(x_train))[:limit])
        keep_valid = np.sort(rng.permutation(len(x_valid))[:limit])
        x_train, y_train, x_valid, y_valid = (x_train[keep_train], y_train[keep_train],
                                              x_valid[keep_valid], y_valid[keep_valid])
    image_shape = tuple(x_train.shape[1:])
    mean, std = float(x_train.mean()), float(x_train.std())

    def features(x: np.ndarray) -> Tensor:
        return torch.from_numpy(((x.reshape(len(x), -1) - mean) / std).astype(np.float32)).to(dtype)

    return DataSplit(features(x_train), torch.from_numpy(y_train.astype(np.int64)), features(x_valid),
                     torch.from_numpy(y_valid.astype(np.int64)), classes, image_shape, name, mean, std,
                     source)


def _check_fraction(valid_fraction: float) -> None:
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must lie strictly between 0 and 1, got {valid_fraction}")
