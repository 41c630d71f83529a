"""Figures shared by the posts: image grids, and the listing thumbnail each run saves."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

THUMBNAIL = "thumbnail.png"
PAGE_WIDTH_PX = 760  # the text column of a post at desktop width, where a figure is shown whole
MIN_TEXT_PX = 13  # text in a figure is never smaller on the page than a figure caption


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


def readable_text(fig: plt.Figure, page_px: float = PAGE_WIDTH_PX,
                  min_px: float = MIN_TEXT_PX) -> plt.Figure:
    """Enlarge every text of `fig` that the page would show smaller than `min_px` pixels.

    A figure wider than the page's column is scaled down to fit it, and its text with it: a
    7 pt title on an 11-inch grid ends up about 7 px tall. The smallest point size that stays
    readable is `min_px` / (page scale) in points at the figure's dpi.
    """
    from matplotlib.text import Text

    width_px = fig.get_figwidth() * fig.dpi
    page_scale = min(1.0, page_px / width_px)
    min_points = min_px / page_scale * 72 / fig.dpi
    enlarged = False
    for text in fig.findobj(Text):
        if text.get_text().strip() and text.get_fontsize() < min_points:
            text.set_fontsize(min_points)
            enlarged = True
    if enlarged and fig.get_layout_engine() is None:
        with contextlib.suppress(Exception):  # a layout tight_layout cannot solve stays as it was
            fig.tight_layout()
    return fig


def readable_figures_on_page() -> bool:
    """In IPython, pass every figure a cell shows through `readable_text`; True if installed."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return False
    plt.close(plt.figure())  # the inline backend installs its formatters with the first figure

    formatter = shell.display_formatter.formatters["image/png"]
    try:
        draw = formatter.lookup_by_type(plt.Figure)
    except KeyError:
        return False
    if getattr(draw, "readable", False):
        return True

    def draw_readable(fig: plt.Figure, *args, **kwargs):
        return draw(readable_text(fig), *args, **kwargs)

    draw_readable.readable = True
    formatter.for_type(plt.Figure, draw_readable)
    return True
