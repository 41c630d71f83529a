"""Our explicit sampling loop equals diffusers' pipelines on a tiny random SD (same seed, same image)."""

import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

from fromscratch.diffusion.parts import load_parts
from fromscratch.diffusion.sampling import generate, prompt_embeddings, to_unit
from fromscratch.diffusion.testing import make_tiny_sd

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = make_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return load_parts(str(folder), device="cpu"), pipe


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def test_parts_of_the_tiny_sd(tiny):
    parts, pipe = tiny
    assert parts.image_size == 32 and parts.latent_shape(3) == (3, 4, 16, 16)
    embeddings = parts.encode_text(["a red circle", ""])
    assert embeddings.shape == (2, 77, 32)
    ours_u, ours_c = prompt_embeddings(parts, ["a red circle"])
    ref_c, ref_u = pipe.encode_prompt("a red circle", "cpu", 1, True)
    assert torch.allclose(ours_c, ref_c) and torch.allclose(ours_u, ref_u)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert parts.decode_latents(parts.encode_images(images)).shape == images.shape
    with pytest.raises(ValueError, match=r"\(B,3,32,32\)"):
        parts.encode_images(torch.zeros(1, 3, 64, 64))
    with pytest.raises(TypeError, match="list of strings"):
        parts.encode_text("a red circle")


@pytest.mark.parametrize("scale", [1.0, 7.5])
def test_text_to_image_equals_stable_diffusion_pipeline(tiny, scale):
    parts, pipe = tiny
    prompts = ["a red circle", "a blue square on the left"]
    ref = pipe(prompts, num_inference_steps=6, guidance_scale=scale, generator=seeded(0),
               output_type="pt").images
    ours = to_unit(generate(parts, prompts, scale, 6, generator=seeded(0)))
    assert ref.std() > 0.01  # not a constant image
    assert (ours - ref).abs().max() < TOLERANCE


def test_negative_prompt_equals_pipeline(tiny):
    parts, pipe = tiny
    ref = pipe(["a red circle"], negative_prompt=["blue"], num_inference_steps=6, guidance_scale=5,
               generator=seeded(1), output_type="pt").images
    ours = to_unit(generate(parts, ["a red circle"], 5, 6, negative_prompts=["blue"], generator=seeded(1)))
    plain = to_unit(generate(parts, ["a red circle"], 5, 6, generator=seeded(1)))
    assert (ours - ref).abs().max() < TOLERANCE
    assert (ours - plain).abs().max() > 1e-3  # the negative prompt changed something


@pytest.mark.parametrize("strength", [0.3, 0.75, 1.0])
def test_img2img_equals_pipeline(tiny, strength):
    parts, pipe = tiny
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    img2img.set_progress_bar_config(disable=True)
    images = torch.rand(2, 3, 32, 32, generator=seeded(5)) * 2 - 1
    prompts = ["a red circle", "a green triangle"]
    ref = img2img(prompts, image=to_unit(images), strength=strength, num_inference_steps=10, guidance_scale=3,
                  generator=seeded(2), output_type="pt").images
    ours = to_unit(generate(parts, prompts, 3, 10, images=images, strength=strength, generator=seeded(2)))
    assert (ours - ref).abs().max() < TOLERANCE


def test_bad_sampling_arguments(tiny):
    parts, _ = tiny
    with pytest.raises(ValueError, match="strength"):
        generate(parts, ["a"], images=torch.zeros(1, 3, 32, 32), strength=0)
    with pytest.raises(ValueError, match="negative prompts"):
        generate(parts, ["a", "b"], negative_prompts=["c"])
    with pytest.raises(ValueError, match="one image per prompt"):
        generate(parts, ["a", "b"], images=torch.zeros(1, 3, 32, 32))
