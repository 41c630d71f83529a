"""The shapes classifier (shipped weights, sha256 checked) and the sample metrics built on it."""

import numpy as np
import pytest
import torch

from fromscratch.diffusion.classifier import (
    CLASSIFIER_PATH,
    isolate_region,
    load_classifier,
    predict,
    tint_backgrounds,
)
from fromscratch.diffusion.metrics import adherence, diversity
from fromscratch.diffusion.shapes import make_shapes


@pytest.fixture(scope="module")
def classifier():
    if not CLASSIFIER_PATH.is_file():
        pytest.skip("data/shapes_classifier.safetensors not trained yet")
    return load_classifier()


def test_reads_shape_and_colour_of_fresh_images(classifier):
    data = make_shapes(120, seed=123, p_two=0)
    shape, colour = predict(classifier, data.images)
    assert (shape == data.shape[:, 0]).mean() > 0.95 and (colour == data.colour[:, 0]).mean() > 0.95
    assert adherence(classifier, data.images, data.shape[:, 0], data.colour[:, 0]).mean() > 0.9


def test_reads_the_shape_not_the_background_tint(classifier):
    data = make_shapes(200, seed=321, p_two=0)
    generator = torch.Generator().manual_seed(0)
    colours = torch.rand(200, 3, generator=generator) * 2 - 1
    tinted = tint_backgrounds(data.images, data.masks[:, 0], torch.full((200,), 0.6), colours)
    outside = ~data.masks[:, 0, None].expand_as(tinted)
    assert torch.equal(tinted[~outside], data.images[~outside])  # the shape itself is untouched
    assert (tinted[outside] - data.images[outside]).abs().mean() > 0.2
    shape, colour = predict(classifier, tinted)
    assert (shape == data.shape[:, 0]).mean() > 0.95 and (colour == data.colour[:, 0]).mean() > 0.95


def test_isolating_one_shape_of_two(classifier):
    data = make_shapes(60, seed=5, p_two=1)
    for k in (0, 1):
        shape, colour = predict(classifier, isolate_region(data.images, data.masks[:, k]))
        assert ((shape == data.shape[:, k]) & (colour == data.colour[:, k])).mean() > 0.8
    with pytest.raises(ValueError, match="regions must be"):
        isolate_region(data.images, data.masks[:, :, :4])


def test_tampered_classifier_is_refused(tmp_path):
    bad = tmp_path / "classifier.safetensors"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match="sha256"):
        load_classifier(bad)


def test_diversity_is_zero_for_copies_and_grows_with_variety():
    data = make_shapes(8, seed=0)
    copies = data.images[:1].repeat(8, 1, 1, 1)
    groups = np.zeros(8, int)
    assert diversity(copies, groups) == pytest.approx(0, abs=1e-6)
    assert diversity(data.images, groups) > 0.1
    noisy = torch.rand(8, 3, 32, 32) * 2 - 1
    assert diversity(noisy, groups) > diversity(data.images, groups)
    with pytest.raises(ValueError, match="two or more"):
        diversity(data.images[:2], np.array([0, 1]))
