"""The shapes dataset: coloured shapes with captions, exact masks and attribute labels, deterministic by seed.

Each image holds one or two shapes (circle, square, triangle) in one of four colours, two sizes and five
positions, on a plain or faintly striped light background. Shapes are drawn with hard edges, so each
per-shape mask is exact: it is the ground truth for the diffusion posts' metrics (prompt adherence,
DiffEdit's mask IoU and background PSNR).

    data = make_shapes(1000, seed=0)          # data.images: (N,3,32,32) in [-1,1]; data.captions[i]
    data.masks[i, k]                          # bool (H,W) mask of shape k of image i (k < data.n_shapes[i])
    data.shape[i, k], data.colour[i, k]       # attribute indices into SHAPES, COLOURS (-1: no such shape)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow")
COLOUR_RGB = {"red": (0.85, 0.12, 0.12), "green": (0.10, 0.62, 0.18),
              "blue": (0.12, 0.25, 0.85), "yellow": (0.95, 0.80, 0.05)}
SIZES = ("small", "large")
SIZE_RADIUS = {"small": (5.0, 6.5), "large": (7.5, 9.0)}  # half-width in pixels at 32x32 (scaled with size)
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom", "in the middle")
POSITION_CENTRE = {"on the left": (0.28, 0.5), "on the right": (0.72, 0.5), "at the top": (0.5, 0.28),
                   "at the bottom": (0.5, 0.72), "in the middle": (0.5, 0.5)}  # (x, y) as fractions
PAIRS = (("on the left", "on the right"), ("at the top", "at the bottom"))


@dataclass
class ShapesData:
    """A batch of shapes images with everything known about them (arrays are indexed [image, shape])."""

    images: torch.Tensor        # (N,3,H,W) float32 in [-1,1]
    masks: torch.Tensor         # (N,2,H,W) bool; masks[i,1] is all False for one-shape images
    captions: list[str]
    n_shapes: np.ndarray        # (N,) 1 or 2
    shape: np.ndarray           # (N,2) index into SHAPES, -1 where absent
    colour: np.ndarray          # (N,2) index into COLOURS
    size: np.ndarray            # (N,2) index into SIZES
    position: np.ndarray        # (N,2) index into POSITIONS
    textured: np.ndarray        # (N,) bool: striped background
    centre: np.ndarray          # (N,2,2) float: (x, y) in pixels of each shape's centre, nan where absent
    radius: np.ndarray          # (N,2) float: half-width in pixels (shape_mask's radius), nan where absent

    def __len__(self) -> int:
        return len(self.captions)


def shape_mask(shape: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    """Exact boolean (size,size) mask of one shape centred at pixel (cx, cy) with half-width `radius`."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; use one of {SHAPES}")
    y, x = np.mgrid[0:size, 0:size] + 0.5
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2
    if shape == "square":
        half = radius * 0.85
        return (np.abs(x - cx) <= half) & (np.abs(y - cy) <= half)
    # triangle pointing up: apex at top, base at bottom, inside all three half-planes
    top, bottom = cy - radius, cy + radius * 0.8
    half_base = radius * 1.1
    inside_height = (y >= top) & (y <= bottom)
    half_width_at_y = half_base * (y - top) / (bottom - top)
    return inside_height & (np.abs(x - cx) <= half_width_at_y)


def caption_for(shape: str, colour: str, position: str | None = None, size: str | None = None) -> str:
    """'a [size] colour shape [position]', e.g. caption_for('circle', 'red', 'on the left')."""
    words = ["a"] + ([size] if size else []) + [colour, shape] + ([position] if position else [])
    return " ".join(words)


def background(rng: np.random.Generator, size: int, textured: bool) -> np.ndarray:
    """A light (3,size,size) background: a random pale tint, with faint diagonal stripes if textured."""
    base = rng.uniform(0.82, 0.95) + rng.uniform(-0.04, 0.04, size=3)
    image = np.broadcast_to(base[:, None, None], (3, size, size)).copy()
    if textured:
        y, x = np.mgrid[0:size, 0:size]
        period = rng.uniform(5, 9) * size / 32
        phase = rng.uniform(0, 2 * np.pi)
        image += 0.05 * np.sin(2 * np.pi * (x + y) / period + phase)[None]
    return np.clip(image, 0, 1)


def _place(rng: np.random.Generator, position: str, size_name: str, size: int) -> tuple[float, float, float]:
    """Centre (x, y) and half-width in pixels of a shape, jittered around its named position."""
    fx, fy = POSITION_CENTRE[position]
    radius = rng.uniform(*SIZE_RADIUS[size_name]) * size / 32
    jitter = 0.04 * size
    return fx * size + rng.uniform(-jitter, jitter), fy * size + rng.uniform(-jitter, jitter), radius


def _one_shape_caption(rng: np.random.Generator, shape: str, colour: str, position: str, size: str,
                       full: bool = False) -> str:
    """A caption that always names colour and shape; size and position are each named at random."""
    if full:
        return caption_for(shape, colour, position, size)
    return caption_for(shape, colour, position if rng.random() < 0.6 else None,
                       size if rng.random() < 0.5 else None)


def make_shapes(n: int, seed: int = 0, size: int = 32, p_two: float = 0.25, p_textured: float = 0.3,
                full_captions: bool = False) -> ShapesData:
    """`n` images (one shape, or two with probability `p_two`) drawn from a generator seeded with `seed`.

    The same arguments always give the same data, and the first k images of make_shapes(n, seed) are
    make_shapes(k, seed). Two-shape images place the shapes in a left/right or top/bottom pair. Captions
    always name colour and shape; `full_captions` also always names size and position.
    """
    if n < 0 or size < 16:
        raise ValueError(f"need n >= 0 and size >= 16, got n={n}, size={size}")
    if not (0 <= p_two <= 1 and 0 <= p_textured <= 1):
        raise ValueError(f"p_two and p_textured are probabilities in [0, 1], got {p_two}, {p_textured}")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 3, size, size), np.float32)
    masks = np.zeros((n, 2, size, size), bool)
    labels = {key: np.full((n, 2), -1, np.int64) for key in ("shape", "colour", "size", "position")}
    n_shapes, textured, captions = np.ones(n, np.int64), np.zeros(n, bool), []
    centres, radii = np.full((n, 2, 2), np.nan), np.full((n, 2), np.nan)
    for i in range(n):
        textured[i] = rng.random() < p_textured
        image = background(rng, size, textured[i])
        two = rng.random() < p_two
        if two:
            positions = list(PAIRS[rng.integers(len(PAIRS))])
        else:
            positions = [POSITIONS[rng.integers(len(POSITIONS))]]
        parts = []
        for k, position in enumerate(positions):
            shape, colour = SHAPES[rng.integers(len(SHAPES))], COLOURS[rng.integers(len(COLOURS))]
            size_name = SIZES[rng.integers(len(SIZES))] if not two else "small"
            cx, cy, radius = _place(rng, position, size_name, size)
            mask = shape_mask(shape, cx, cy, radius, size)
            centres[i, k], radii[i, k] = (cx, cy), radius
            rgb = np.clip(np.array(COLOUR_RGB[colour]) + rng.uniform(-0.05, 0.05, 3), 0, 1)
            image[:, mask] = rgb[:, None]
            masks[i, k] = mask
            for key, value, names in (("shape", shape, SHAPES), ("colour", colour, COLOURS),
                                      ("size", size_name, SIZES), ("position", position, POSITIONS)):
                labels[key][i, k] = names.index(value)
            parts.append(caption_for(shape, colour, position) if two else
                         _one_shape_caption(rng, shape, colour, position, size_name, full_captions))
        if two:  # the second shape is drawn last: remove what it covers from the first mask
            masks[i, 0] &= ~masks[i, 1]
        n_shapes[i] = len(positions)
        captions.append(" and ".join(parts))
        images[i] = image
    return ShapesData(torch.from_numpy(images * 2 - 1), torch.from_numpy(masks), captions, n_shapes,
                      labels["shape"], labels["colour"], labels["size"], labels["position"], textured,
                      centres, radii)


def prompt_grid() -> list[tuple[str, str, str]]:
    """Every (caption, shape, colour) of one shape with no size or position: the prompts of the metrics."""
    return [(caption_for(shape, colour), shape, colour) for shape in SHAPES for colour in COLOURS]
