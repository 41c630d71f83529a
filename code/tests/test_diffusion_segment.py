"""The classifier-free reader of shapes images: it finds each dataset shape where make_shapes drew it."""

import numpy as np
import pytest
import torch

from fromscratch.diffusion.classifier import tint_backgrounds
from fromscratch.diffusion.segment import fit_kind, locate_shapes, nearest_colour, spread_by_group
from fromscratch.diffusion.shapes import COLOUR_RGB, COLOURS, SHAPES, background, make_shapes, shape_mask


@pytest.fixture(scope="module")
def data():
    return make_shapes(150, seed=17, p_two=0)


def test_finds_the_exact_mask_centre_size_colour_and_kind(data):
    found = locate_shapes(data.images)
    truth = data.masks[:, 0].numpy()
    iou = (found.mask & truth).sum(axis=(1, 2)) / (found.mask | truth).sum(axis=(1, 2))
    assert found.found.all() and iou.min() == 1.0
    assert (found.colour == data.colour[:, 0]).all() and (found.shape == data.shape[:, 0]).all()
    # the centroid of a triangle lies off its centre: compare medians
    assert np.median(np.abs(found.centre - data.centre[:, 0])) < 0.3
    assert np.abs(found.radius - data.radius[:, 0]).max() < 1.0
    assert (found.area == truth.sum(axis=(1, 2))).all()


def test_a_tinted_background_does_not_change_the_reading(data):
    colours = torch.rand(len(data), 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    tinted = tint_backgrounds(data.images, data.masks[:, 0], torch.full((len(data),), 0.6), colours)
    found = locate_shapes(tinted)
    assert (found.colour == data.colour[:, 0]).mean() > 0.97
    assert (found.shape == data.shape[:, 0]).mean() > 0.97


def test_a_blank_background_holds_no_shape():
    rng = np.random.default_rng(0)
    blanks = np.stack([background(rng, 32, textured=k % 2 == 1) for k in range(6)])
    found = locate_shapes(torch.from_numpy(blanks).float() * 2 - 1)
    assert not found.found.any() and (found.colour == -1).all() and (found.shape == -1).all()
    assert np.isnan(found.centre).all()


def test_fit_kind_recovers_each_drawn_shape():
    for k, kind in enumerate(SHAPES):
        region = shape_mask(kind, 15.3, 16.8, 7.2, 32)
        shape, iou, radius = fit_kind(region)
        assert (shape, round(radius)) == (k, 7) and iou > 0.9


def test_nearest_colour_of_the_dataset_colours_and_of_orange():
    rgb = np.array([COLOUR_RGB[c] for c in COLOURS])
    assert (nearest_colour(rgb) == np.arange(len(COLOURS))).all()
    assert COLOURS[nearest_colour(np.array([[0.97, 0.38, 0.05]]))[0]] == "red"  # orange, nearer red


def test_spread_is_zero_for_copies_and_the_data_spread_otherwise(data):
    copies = locate_shapes(data.images[:1].repeat(4, 1, 1, 1))
    position, size = spread_by_group(copies, np.zeros(4, int))
    assert position[0] == pytest.approx(0) and size[0] == pytest.approx(0)
    found = locate_shapes(data.images)
    groups = data.shape[:, 0] * len(COLOURS) + data.colour[:, 0]
    position, size = spread_by_group(found, groups)
    for g, group in enumerate(np.unique(groups)):
        members = groups == group
        centres, sides = data.centre[members, 0], np.sqrt(data.masks[members, 0].sum(dim=(1, 2)).numpy())
        expected = np.sqrt(((centres - centres.mean(axis=0)) ** 2).sum(axis=1).mean())
        assert position[g] == pytest.approx(expected, abs=0.3)
        assert size[g] == pytest.approx(sides.std())


def test_bad_input_is_named(data):
    with pytest.raises(ValueError, match="images must be"):
        locate_shapes(data.images[:, :2])
    found = locate_shapes(data.images[:3])
    with pytest.raises(ValueError, match="groups must"):
        spread_by_group(found, np.zeros(2, int))
    with pytest.raises(ValueError, match="needs two"):
        spread_by_group(found, np.arange(3))
