"""Scores of generated shapes images: prompt adherence (read by the shapes classifier) and diversity."""

from __future__ import annotations

import numpy as np
import torch

from fromscratch.diffusion.classifier import ShapesClassifier, predict


def adherence(classifier: ShapesClassifier, images: torch.Tensor, shape: np.ndarray,
              colour: np.ndarray) -> np.ndarray:
    """(B,) bool: does the classifier read the prompted shape AND colour in each image?"""
    read_shape, read_colour = predict(classifier, images)
    return (read_shape == np.asarray(shape)) & (read_colour == np.asarray(colour))


def diversity(images: torch.Tensor, groups: np.ndarray) -> float:
    """Mean pairwise RMS pixel distance between images of the same group (same prompt), in [0,1] units.

    0 means every sample of a prompt is the same picture; larger means more varied positions, sizes and
    backgrounds. A cheap stand-in for the FID/IS side of the paper's trade-off.
    """
    pictures = (images.float().clamp(-1, 1) / 2 + 0.5).flatten(1)
    groups = np.asarray(groups)
    per_group = []
    for group in np.unique(groups):
        members = pictures[torch.from_numpy(groups == group)]
        if len(members) < 2:
            continue
        distances = torch.cdist(members, members) / members.shape[1] ** 0.5
        n = len(members)
        per_group.append(distances.sum().item() / (n * (n - 1)))
    if not per_group:
        raise ValueError("diversity needs at least one group with two or more images")
    return float(np.mean(per_group))
