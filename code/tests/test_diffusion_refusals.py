"""Bad requests to the diffusion code fail in one line naming the argument (issue 13), before any work."""

from __future__ import annotations

import pytest
import torch

from fromscratch.diffusion.diffedit import generate_mask, shape_edits
from fromscratch.diffusion.parts import load_parts
from fromscratch.diffusion.sampling import generate
from fromscratch.diffusion.testing import make_tiny_sd


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return load_parts(str(make_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))), device="cpu")


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(prompts=[]), "prompts is empty"),
    (dict(num_steps=2.5), "num_steps must be a positive integer"),
    (dict(num_steps="3"), "num_steps must be a positive integer"),
    (dict(num_steps=0), "num_steps must be a positive integer"),
    (dict(guidance_scale=torch.tensor([1.0, 2.0, 3.0])), "guidance_scale has 3 values for 2 prompts"),
    (dict(latents=torch.zeros(3, 4, 16, 16)), r"latents must have shape \(2, 4, 16, 16\)"),
    (dict(latents=torch.zeros(2, 4, 8, 8)), r"latents must have shape \(2, 4, 16, 16\)"),
])
def test_generate_refuses_bad_requests(parts, kwargs, match):
    request = dict(prompts=["a red circle", "a blue square"], num_steps=2) | kwargs
    with pytest.raises(ValueError, match=match) as error:
        generate(parts, **request)
    one_line(error)


def test_generate_accepts_one_guidance_value_per_prompt(parts):
    images = generate(parts, ["a red circle", "a blue square"], num_steps=1,
                      guidance_scale=torch.tensor([1.0, 3.0]), generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()


def test_generate_mask_refuses_an_empty_batch(parts):
    with pytest.raises(ValueError, match="no image") as error:
        generate_mask(parts, torch.zeros(0, 4, 16, 16), [], [], num_draws=1, num_steps=2)
    one_line(error)


@pytest.mark.parametrize("n", [0, -1, 2.0])
def test_shape_edits_refuses_a_non_positive_count(n):
    with pytest.raises(ValueError, match="n must be a positive number") as error:
        shape_edits(n)
    one_line(error)
