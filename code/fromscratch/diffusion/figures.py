"""Pictures of diffusion runs: labelled rows of samples, and denoising animations as GIFs."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) images in [-1,1] -> (B,H,W,3) uint8."""
    unit = (images.detach().float().cpu().clamp(-1, 1) / 2 + 0.5).permute(0, 2, 3, 1)
    return (unit.numpy() * 255).round().astype(np.uint8)


def show_rows(rows: dict[str, torch.Tensor], titles: Sequence[str] | None = None, size: float = 1.0,
              title_size: int = 7) -> plt.Figure:
    """One row of images per entry of `rows` (label -> (N,3,H,W) in [-1,1]), the label left of the row."""
    labels, ncols = list(rows), max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(labels), ncols, figsize=(size * ncols + 0.8, size * len(labels) + 0.3),
                             squeeze=False)
    for r, label in enumerate(labels):
        pixels = to_pixels(rows[label])
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(pixels):
                ax.imshow(pixels[c], interpolation="nearest")
            if r == 0 and titles is not None and c < len(titles):
                ax.set_title(titles[c], fontsize=title_size)
        axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.3)
    return fig


def gif_bytes(frames: Sequence[torch.Tensor], scale: float = 4, ms_per_frame: int = 250,
              hold_last: int = 6) -> bytes:
    """An animated GIF of `frames`, each a (B,3,H,W) batch in [-1,1] laid out side by side."""
    pictures = []
    for frame in list(frames) + [frames[-1]] * hold_last:
        pixels = to_pixels(frame)
        strip = np.concatenate(list(pixels), axis=1)
        picture = Image.fromarray(strip)
        size = (round(picture.width * scale), round(picture.height * scale))
        pictures.append(picture.resize(size, Image.NEAREST if scale >= 1 else Image.LANCZOS))
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=ms_per_frame,
                     loop=0)
    return buffer.getvalue()


def gif_html(data: bytes, alt: str) -> str:
    """An <img> tag carrying the GIF inline, so the page needs no separate file."""
    encoded = base64.b64encode(data).decode()
    return f'<img src="data:image/gif;base64,{encoded}" alt="{alt}" style="max-width:100%">'
