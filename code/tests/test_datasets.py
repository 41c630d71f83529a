"""fromscratch.datasets: digits from scikit-learn, and the Hugging Face loader on a tiny local dataset."""

from __future__ import annotations

import datasets as hf
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from fromscratch import datasets

CLASSES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def tiny_images() -> tuple[np.ndarray, np.ndarray]:
    """Twelve 6x5 grey images whose pixels encode their row number, and their labels."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(12, 6, 5), dtype=np.uint8)
    labels = np.arange(12) % 3
    return pixels, labels


def to_hf(pixels: np.ndarray, labels: np.ndarray) -> hf.Dataset:
    features = hf.Features({"image": hf.Image(), "label": hf.ClassLabel(names=CLASSES)})
    return hf.Dataset.from_dict({"image": [Image.fromarray(p) for p in pixels], "label": labels.tolist()},
                                features=features)


@pytest.fixture(scope="module")
def saved_dict(tmp_path_factory, tiny_images) -> str:
    """A DatasetDict with train (first 9) and test (last 3) splits, written with save_to_disk."""
    pixels, labels = tiny_images
    folder = tmp_path_factory.mktemp("hf") / "tiny"
    hf.DatasetDict(train=to_hf(pixels[:9], labels[:9]), test=to_hf(pixels[9:], labels[9:])
                   ).save_to_disk(str(folder))
    return str(folder)


def test_digits_are_standardised_float_tensors_with_a_split() -> None:
    split = datasets.load("digits", valid_fraction=0.25, seed=1)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert len(split.x_train) + len(split.x_valid) == 1797
    assert len(split.x_valid) == round(1797 * 0.25)
    assert split.n_features == 64 and split.n_classes == 10 and split.image_shape == (8, 8)
    assert abs(split.x_train.mean().item()) < 1e-5 and abs(split.x_train.std().item() - 1) < 1e-3
    # the rows are sklearn's own digits, shuffled: images() undoes the normalisation
    reference = load_digits()
    first = split.images(split.x_train[:1])[0].numpy() * 16
    match = np.abs(reference.images - first).reshape(1797, -1).max(1)
    assert match.min() < 1e-4
    assert reference.target[match.argmin()] == split.y_train[0].item()


def test_digits_split_is_reproducible_and_disjoint() -> None:
    a, b = datasets.load_digits(seed=3), datasets.load_digits(seed=3)
    torch.testing.assert_close(a.x_valid, b.x_valid)
    c = datasets.load_digits(seed=4)
    assert not torch.equal(a.y_valid, c.y_valid)
    train_rows = {tuple(r.tolist()) for r in a.x_train}
    assert sum(tuple(r.tolist()) in train_rows for r in a.x_valid) < 5  # digits has a few duplicates


def test_limit_and_dtype() -> None:
    split = datasets.load("digits", limit=100, dtype=torch.float64)
    assert len(split.x_train) == 100 and len(split.x_valid) == 100 and split.x_train.dtype == torch.float64


def test_hf_loader_reads_a_save_to_disk_folder(saved_dict, tiny_images) -> None:
    pixels, labels = tiny_images
    split = datasets.load(saved_dict)
    assert split.classes == tuple(CLASSES) and split.image_shape == (6, 5) and split.name == "tiny"
    assert split.x_train.shape == (9, 30) and split.x_valid.shape == (3, 30)
    torch.testing.assert_close(split.y_train, torch.from_numpy(labels[:9]).long())
    torch.testing.assert_close(split.y_valid, torch.from_numpy(labels[9:]).long())
    expected = pixels[:9].reshape(9, -1) / 255.0
    assert split.mean == pytest.approx(expected.mean(), rel=1e-5)
    torch.testing.assert_close(split.x_train, torch.from_numpy(((expected - split.mean) / split.std)
                                                               .astype(np.float32)))
    torch.testing.assert_close(split.images(split.x_valid), torch.from_numpy(pixels[9:] / 255.0).float(),
                               atol=1e-6, rtol=0)


def test_hf_loader_reads_parquet_and_single_splits(tmp_path, saved_dict, tiny_images) -> None:
    pixels, labels = tiny_images
    loaded = hf.load_from_disk(saved_dict)
    folder = tmp_path / "pq"
    folder.mkdir()
    loaded["train"].to_parquet(str(folder / "train-00000-of-00001.parquet"))
    loaded["test"].to_parquet(str(folder / "test-00000-of-00001.parquet"))
    split = datasets.load(str(folder))
    assert split.x_train.shape == (9, 30) and split.x_valid.shape == (3, 30)
    torch.testing.assert_close(split.y_valid, torch.from_numpy(labels[9:]).long())
    # one parquet file: no test split, so a fraction of train is held out
    single = datasets.load(str(folder / "train-00000-of-00001.parquet"), valid_fraction=1 / 3)
    assert len(single.x_train) == 6 and len(single.x_valid) == 3
    # a save_to_disk Dataset (not a dict) is the train split
    lone = tmp_path / "lone"
    to_hf(pixels, labels).save_to_disk(str(lone))
    assert len(datasets.load(str(lone), valid_fraction=0.25).x_valid) == 3


def test_hf_loader_errors_are_clear(saved_dict, tmp_path) -> None:
    with pytest.raises(ValueError, match="no column 'img'"):
        datasets.load_hf_images(saved_dict, image_column="img")
    with pytest.raises(ValueError, match="no split 'training'"):
        datasets.load_hf_images(saved_dict, train_split="training")
    with pytest.raises(ValueError, match="neither"):
        datasets.load(str(tmp_path))
    with pytest.raises(ValueError, match="valid_fraction"):
        datasets.load("digits", valid_fraction=1.0)


def test_hub_names_map_to_hub_ids() -> None:
    assert datasets.HUB_IDS["fashion_mnist"] == "zalando-datasets/fashion_mnist"
    assert datasets.HUB_IDS["mnist"] == "ylecun/mnist"


def test_to_device_keeps_everything() -> None:
    split = datasets.load("digits", limit=10).to("cpu")
    assert split.x_train.device.type == "cpu" and "digits" in repr(split)


def test_hub_failure_names_the_offline_alternatives(monkeypatch) -> None:
    monkeypatch.setattr(hf.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match=r"zalando-datasets/fashion_mnist.*digits"):
        datasets.load("fashion_mnist")
