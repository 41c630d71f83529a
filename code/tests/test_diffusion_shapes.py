"""The shapes dataset: deterministic by seed, exact masks, captions that match the labels."""

import numpy as np
import pytest
import torch

from fromscratch.diffusion.shapes import COLOURS, POSITIONS, SHAPES, make_shapes, shape_mask


def test_same_seed_same_data_and_prefix_property():
    a, b = make_shapes(40, seed=3), make_shapes(40, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert a.captions == b.captions and np.array_equal(a.colour, b.colour)
    prefix = make_shapes(10, seed=3)
    assert torch.equal(prefix.images, a.images[:10]) and prefix.captions == a.captions[:10]
    assert not torch.equal(make_shapes(40, seed=4).images, a.images)


def test_masks_are_exactly_the_shape_pixels():
    data = make_shapes(60, seed=0, p_two=0.5)
    assert data.images.shape == (60, 3, 32, 32) and data.images.min() >= -1 and data.images.max() <= 1
    for i in range(len(data)):
        for k in range(data.n_shapes[i]):
            mask = data.masks[i, k]
            assert mask.sum() > 10
            inside = data.images[i][:, mask]
            assert torch.allclose(inside, inside[:, :1].expand_as(inside))  # one flat colour
        if data.n_shapes[i] == 1:
            assert not data.masks[i, 1].any() and data.shape[i, 1] == -1
        assert not (data.masks[i, 0] & data.masks[i, 1]).any()


def test_captions_name_the_labels():
    data = make_shapes(100, seed=1, p_two=0.3, full_captions=True)
    for i in range(len(data)):
        for k in range(data.n_shapes[i]):
            words = f"{COLOURS[data.colour[i, k]]} {SHAPES[data.shape[i, k]]}"
            assert words in data.captions[i]
            assert POSITIONS[data.position[i, k]] in data.captions[i]
        assert (" and " in data.captions[i]) == (data.n_shapes[i] == 2)


def test_shape_mask_geometry_and_bad_input():
    circle = shape_mask("circle", 16, 16, 8, 32)
    assert abs(circle.sum() - np.pi * 64) < 12
    assert shape_mask("square", 16, 16, 8, 32).sum() > circle.sum() * 0.8
    with pytest.raises(ValueError, match="unknown shape"):
        shape_mask("hexagon", 16, 16, 8, 32)
    with pytest.raises(ValueError, match="probabilities"):
        make_shapes(4, p_two=2)
