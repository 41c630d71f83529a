"""The publish path, rehearsed on CPU: every post's gpu profile, as publish.yml runs it, with each
hub-dependent input replaced by a local stand-in that takes the same code path.

* the Stable Diffusion model id -> the tiny random SD folder `make_tiny_sd` writes (a real
  diffusers folder: VAE, CLIP tokenizer and text encoder, UNet, scheduler), so the VAE latent
  path, the CLIP tokenizer and the photo prompts run;
* the hub dataset -> a folder with Fashion-MNIST's schema (28x28 grey images, ten named
  classes, train and test splits), written here, read by the same loader;
* sizes are reduced only where a gpu.yml value would keep a 2-core CPU busy too long (REDUCED).

What it cannot cover: the CUDA kernels (skipped without a GPU, as the posts skip them) and the
real weights' pictures and numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fromscratch.site import notebook
from site_paths import POSTS, ROOT

pytestmark = [pytest.mark.posts, pytest.mark.skipif(not POSTS, reason="no posts yet")]

HUB_MODEL, HUB_DATASET = "model", "dataset"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
# gpu.yml values a CPU cannot run in a minute, reduced; every other value is gpu.yml's own.
REDUCED: dict[str, dict[str, object]] = {
    "backprop-maths": {"limit": 600, "epochs": 2, "n_hidden": 64, "timing_repeats": 3,
                       "check_rows": 32},
    "softmax-logsumexp": {"limit": 600, "bench_sizes": [[256, 10], [1024, 100]],
                          "bench_rounds": 3, "train_steps": 30},
    "einsum": {"random_specs": 100, "n": 256, "batch": 4, "heads": 4, "seq": 64,
               "head_dim": 32, "points": 500, "features": 32, "rounds": 3},
    "matmul": {"size": 256, "python_rows": 1, "sliced_rows": 4, "njit_rows": 8, "rounds": 3,
               "check_size": 64, "sweep_size": 256},
    "norms": {"matrix_size": 200, "power_iterations": 100, "points": 1000, "features": 64,
              "memory_points": 300, "study_points": 200, "rounds": 3},
    "convolutions": {"bench_shapes": [[64, 1, 28, 28, 32, 3, 1, 1, 1], [64, 32, 28, 28, 64, 3, 2, 1, 1],
                                      [16, 64, 28, 28, 64, 3, 1, 1, 64]],
                     "bench_rounds": 2, "bench_repeats": 2, "channels": [8, 16, 32], "epochs": 2},
    "autoencoder": {"epochs": 3, "channels": [8, 16]},
    "clustering-and-search": {"kmeans_n": 20000, "kmeans_iterations": 5, "search_n": 20000, "n_queries": 200,
                              "pq_train": 5000, "rounds": 1, "threads": 1},
    "mean-shift": {"knn_sizes": [1500], "full_sizes": [1500, 3000], "n_landmarks": 256,
                   "landmark_sizes": [1500, 3000], "sklearn_n": 1500, "rounds": 1},
    "classifier-free-guidance": {"num_steps": 4},
    "negative-prompts-img2img": {"num_steps": 10, "negative_samples": 2, "img2img_samples": 1},
    "diffedit": {"num_steps": 4, "num_edits": 4, "sweep_edits": 4, "num_draws": 2, "second_edits": 4,
                 "batch_size": 4},
    "fewer-steps": {"settings_steps": 4, "grid_steps": [2, 4], "curve_steps": [1, 2, 4], "curve_samples": 24,
                    "real_images": 300, "sweep_scales": [1.0, 5.0], "sweep_samples": 12,
                    "compare_samples": 24, "batch_size": 24},
}
REHEARSAL_BUDGET_SECONDS = 600  # all 15 posts on a 2-core CPU: 476 s measured on a slow host


def write_fashion_like(folder: Path, rows: int = 300) -> Path:
    """A dataset with Fashion-MNIST's schema, saved with `save_to_disk`."""
    import datasets as hf
    from PIL import Image

    rng = np.random.default_rng(0)
    features = hf.Features({"image": hf.Image(), "label": hf.ClassLabel(names=list(FASHION_CLASSES))})

    def split(n: int) -> hf.Dataset:
        labels = rng.integers(0, len(FASHION_CLASSES), n)
        pixels = (rng.random((n, 28, 28)) * 64 + labels[:, None, None] * 19).astype(np.uint8)
        return hf.Dataset.from_dict({"image": [Image.fromarray(p, mode="L") for p in pixels],
                                     "label": labels.tolist()}, features=features)

    hf.DatasetDict(train=split(rows), test=split(rows // 3)).save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, str]:
    from fromscratch.diffusion.testing import make_tiny_sd

    folder = tmp_path_factory.mktemp("stand-ins")
    return {HUB_MODEL: str(make_tiny_sd(folder / "tiny-sd")),
            HUB_DATASET: str(write_fashion_like(folder / "fashion-mnist-like"))}


@pytest.fixture(scope="module")
def site_copy(tmp_path_factory) -> Path:
    """The site's sources in a folder of their own, so the rehearsal's _build/ is its own."""
    root = tmp_path_factory.mktemp("rehearsal")
    for entry in ROOT.iterdir():
        if entry.is_file() and entry.suffix in (".yml", ".qmd", ".bib", ".csl"):
            shutil.copy2(entry, root / entry.name)
    shutil.copytree(ROOT / "posts", root / "posts",
                    ignore=shutil.ignore_patterns("thumbnail.png", ".ipynb_checkpoints"))
    return root


def rehearsal_parameters(slug: str, stand_ins: dict[str, str]) -> dict[str, object]:
    """What the rehearsal overrides: the device, the hub inputs, and the REDUCED sizes."""
    gpu = yaml.safe_load((ROOT / "posts" / slug / "gpu.yml").read_text()) or {}
    declared = notebook.parameters(notebook.read(ROOT / "posts" / slug / "index.ipynb"))
    params: dict[str, object] = {"device": "cpu", **REDUCED.get(slug, {})}
    for name in (HUB_MODEL, HUB_DATASET):
        if name in gpu:
            params[name] = stand_ins[name]
    undeclared = set(params) - set(declared)
    assert not undeclared, f"REDUCED names parameters {slug} does not declare: {undeclared}"
    return params


@pytest.fixture(scope="module")
def timings() -> dict[str, float]:
    return {}


@pytest.mark.parametrize("slug", POSTS)
def test_gpu_profile_runs_on_cpu_with_stand_ins(slug, stand_ins, site_copy, timings) -> None:
    params = rehearsal_parameters(slug, stand_ins)
    args = [arg for name, value in params.items()
            for arg in ("--param", f"{name}={json.dumps(value) if isinstance(value, list) else value}")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "fromscratch.site.build", "--root", str(site_copy),
                           "--profile", "gpu", "--posts", slug, "--no-render",
                           "--no-quarto-install", *args],
                          capture_output=True, text=True, env=env, timeout=600)
    report = {r["slug"]: r for r in
              json.loads((site_copy / "_build" / "build-report.json").read_text())}
    result = report[slug]
    timings[slug] = result["seconds"]
    print(f"rehearsal {slug}: {result['status']} in {result['seconds']:.1f} s")
    assert done.returncode == 0 and result["status"] == "ok", result["error"] or done.stderr
    executed = notebook.read(site_copy / "_build" / "posts" / slug / "index.ipynb")
    assert executed.metadata["fromscratch"]["profile"] == "gpu"
    assert sum(timings.values()) < REHEARSAL_BUDGET_SECONDS, timings
