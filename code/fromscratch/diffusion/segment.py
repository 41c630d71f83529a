"""Find the shape in a generated shapes image without a classifier: its mask, centre, size, colour and kind.

A second reader of generated pictures, independent of the shapes classifier. The background is the
image's median colour (a shape covers under a third of the picture); the shape is the largest
4-connected region of pixels far from it. Its colour is the nearest of the dataset's four colours to
the mean colour inside that region; its kind is the exact shape (circle, square or triangle, drawn as
the dataset draws them) that overlaps the region best.

    found = locate_shapes(images)   # found.mask (B,H,W), found.centre (B,2), found.radius, found.colour, ...
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fromscratch.diffusion.shapes import COLOUR_RGB, COLOURS, SHAPES, shape_mask

FAR_FROM_BACKGROUND = 0.35  # RGB distance in [0,1] units: about 1/3 of the weakest shape/background contrast
MIN_PIXELS = 8  # a smaller region is not a shape
# area of each kind at half-width r, as a multiple of r^2, and its centroid's offset below the centre
AREA_PER_R2 = {"circle": np.pi, "square": 1.7 ** 2, "triangle": 1.1 * 1.8}
CENTROID_DROP = {"circle": 0.0, "square": 0.0, "triangle": 0.2}
SIZE_SEARCH = (0.85, 0.925, 1.0, 1.075, 1.15)  # half-widths tried, as multiples of the one the area gives


@dataclass
class FoundShapes:
    """What `locate_shapes` read in each image; arrays are indexed by image."""

    mask: np.ndarray        # (B,H,W) bool: the largest region far from the background
    found: np.ndarray       # (B,) bool: that region has at least MIN_PIXELS pixels
    centre: np.ndarray      # (B,2) float: (x, y) in pixels of the region's centroid (nan if not found)
    area: np.ndarray        # (B,) int: pixels in the region
    mean_rgb: np.ndarray    # (B,3) float in [0,1]: mean colour inside the region
    colour: np.ndarray      # (B,) index into COLOURS of the nearest colour (-1 if not found)
    shape: np.ndarray       # (B,) index into SHAPES of the best-fitting exact shape (-1 if not found)
    fit_iou: np.ndarray     # (B,) IoU of that exact shape with the region
    radius: np.ndarray      # (B,) half-width in pixels of that exact shape (nan if not found)

    def __len__(self) -> int:
        return len(self.found)


def background_distance(images: torch.Tensor) -> np.ndarray:
    """(B,H,W) RGB distance, in [0,1] units, of every pixel from its image's median colour."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B,3,H,W) in [-1,1], got shape {tuple(images.shape)}")
    unit = (images.detach().float().cpu().clamp(-1, 1) / 2 + 0.5).numpy()
    median = np.median(unit.reshape(len(unit), 3, -1), axis=2)
    return np.sqrt(((unit - median[:, :, None, None]) ** 2).sum(axis=1))


def largest_region(far: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a (H,W) bool array (all False when it has none)."""
    from scipy.ndimage import label

    labels, count = label(far)
    if count == 0:
        return np.zeros_like(far)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def nearest_colour(rgb: np.ndarray) -> np.ndarray:
    """(B,) index into COLOURS of the dataset colour nearest (RGB distance) to each (B,3) colour in [0,1]."""
    prototypes = np.array([COLOUR_RGB[c] for c in COLOURS])
    return np.argmin(((rgb[:, None, :] - prototypes[None]) ** 2).sum(axis=2), axis=1)


def fit_kind(region: np.ndarray) -> tuple[int, float, float]:
    """(SHAPES index, IoU, half-width) of the exact shape that best overlaps a (H,W) region.

    For each kind, the half-width follows from the region's area and the centre from its centroid; a
    small search around both (+-1 px, SIZE_SEARCH) absorbs the region's ragged edge.
    """
    size = region.shape[0]
    ys, xs = np.nonzero(region)
    cx, cy, area = xs.mean() + 0.5, ys.mean() + 0.5, len(xs)
    dx, dy, stretch = (a.reshape(-1, 1, 1) for a in np.meshgrid([-1, 0, 1], [-1, 0, 1], SIZE_SEARCH))
    best = (-1, -1.0, np.nan)
    for k, kind in enumerate(SHAPES):
        r = np.sqrt(area / AREA_PER_R2[kind]) * stretch
        exact = shape_mask(kind, cx + dx, cy - CENTROID_DROP[kind] * r + dy, r, size)  # (27,H,W)
        iou = (exact & region).sum(axis=(1, 2)) / (exact | region).sum(axis=(1, 2))
        j = int(np.argmax(iou))
        if iou[j] > best[1]:
            best = (k, float(iou[j]), float(r.ravel()[j]))
    return best


def locate_shapes(images: torch.Tensor, threshold: float = FAR_FROM_BACKGROUND) -> FoundShapes:
    """Segment the main shape of each (B,3,H,W) image in [-1,1] and read its centre, size, colour and kind."""
    distance = background_distance(images)
    unit = (images.detach().float().cpu().clamp(-1, 1) / 2 + 0.5).numpy()
    n, size = len(distance), distance.shape[-1]
    mask = np.zeros((n, size, size), bool)
    centre, mean_rgb = np.full((n, 2), np.nan), np.full((n, 3), np.nan)
    colour, kind = np.full(n, -1), np.full(n, -1)
    fit_iou, radius = np.zeros(n), np.full(n, np.nan)
    for i in range(n):
        mask[i] = largest_region(distance[i] > threshold)
        if mask[i].sum() < MIN_PIXELS:
            continue
        ys, xs = np.nonzero(mask[i])
        centre[i] = xs.mean() + 0.5, ys.mean() + 0.5
        mean_rgb[i] = unit[i][:, mask[i]].mean(axis=1)
        kind[i], fit_iou[i], radius[i] = fit_kind(mask[i])
    found = mask.sum(axis=(1, 2)) >= MIN_PIXELS
    colour[found] = nearest_colour(mean_rgb[found])
    return FoundShapes(mask, found, centre, mask.sum(axis=(1, 2)), mean_rgb, colour, kind, fit_iou, radius)


def spread_by_group(found: FoundShapes, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position spread, size spread) in pixels for each group (prompt) of samples, in np.unique order.

    Position spread: root-mean-square distance of the shapes' centres from their group's mean centre.
    Size spread: standard deviation of the shapes' size, the square root of their area. Samples where no
    shape was found are left out; a group needs two found shapes.
    """
    groups = np.asarray(groups)
    if groups.shape != (len(found),):
        raise ValueError(f"groups must give one group per image ({len(found)}), got shape {groups.shape}")
    position, size = [], []
    for group in np.unique(groups):
        members = (groups == group) & found.found
        if members.sum() < 2:
            raise ValueError(f"group {group!r} has {members.sum()} found shapes; a spread needs two")
        centres, sides = found.centre[members], np.sqrt(found.area[members])
        position.append(np.sqrt(((centres - centres.mean(axis=0)) ** 2).sum(axis=1).mean()))
        size.append(sides.std())
    return np.array(position), np.array(size)
