"""Figures shared by the posts: image grids, and the listing thumbnail each run saves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

THUMBNAIL = "thumbnail.png"


def to_numpy_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C,H,W) or (H,W) tensor in [0,1] (or [-1,1] if it has negatives) -> (H,W[,C]) array."""
    array = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else image
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.min() < 0:
        array = (array + 1) / 2
    return np.clip(array.squeeze(), 0, 1)


def show_images(images: Sequence, ncols: int = 8, titles: Sequence[str] | None = None,
                size: float = 1.4, cmap: str = "gray") -> plt.Figure:
    """A grid of images with optional titles; returns the figure."""
    images = list(images)
    nrows = max(1, -(-len(images) // ncols))
    ncols = min(ncols, len(images))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < len(images):
            ax.imshow(to_numpy_image(images[index]), cmap=cmap)
            if titles is not None:
                ax.set_title(titles[index], fontsize=8)
    fig.tight_layout()
    return fig


def save_thumbnail(fig: plt.Figure, folder: str | Path = ".") -> Path:
    """Save `fig` as the post's listing image (front matter `image: thumbnail.png`)."""
    path = Path(folder) / THUMBNAIL
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path
