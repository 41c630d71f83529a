"""DiffEdit's three steps on the tiny random SD, checked against diffusers' DiffEdit pipeline."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionDiffEditPipeline

from fromscratch.diffusion import diffedit as de
from fromscratch.diffusion.parts import load_parts
from fromscratch.diffusion.testing import make_tiny_sd

# relative L2 error of DDIM inversion -> decoding ("" prompt, no guidance), 20 steps, r = 0.5, on
# unit-variance latents: what remains is DDIM's approximation eps(x_{t-1}, t) ~ eps(x_t, t), large for a
# random UNet
RECONSTRUCTION_BOUND = 0.06
PAIRS = [("a red circle", "a blue circle"), ("a square", "a triangle")]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    folder = make_tiny_sd(tmp_path_factory.mktemp("tiny") / "tiny-sd")
    return load_parts(str(folder), device="cpu")


@pytest.fixture(scope="module")
def pipe(parts):
    pipeline = StableDiffusionDiffEditPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        scheduler=DDIMScheduler.from_config(parts.scheduler.config), safety_checker=None,
        feature_extractor=None, inverse_scheduler=DDIMInverseScheduler.from_config(parts.scheduler.config),
        requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def latents(parts):
    images = torch.rand(2, 3, parts.image_size, parts.image_size, generator=torch.Generator().manual_seed(0))
    return de.encode(parts, images * 2 - 1)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    return ((a & b).sum() / (a | b).sum().clamp(min=1)).item()


def test_mask_agrees_with_diffusers(parts, pipe, latents):
    for index, (reference, query) in enumerate(PAIRS):
        noise = torch.randn(4, *latents.shape[1:], generator=torch.Generator().manual_seed(index))
        ours = de.generate_mask(parts, latents[index:index + 1], reference, query, num_draws=4, noise=noise)
        # diffusers' generate_mask needs guidance > 1 (it unpacks encode_prompt's pair in reverse order);
        # the mask does not depend on the scale: both maps scale by |1 - s| and the clamp divides it out
        theirs = pipe.generate_mask(image=latents[index:index + 1], source_prompt=reference,
                                    target_prompt=query, num_maps_per_mask=4, output_type="np",
                                    generator=torch.Generator().manual_seed(index))
        score = iou(ours.mask[0], torch.as_tensor(theirs[0]))
        print(f"mask IoU vs diffusers ({reference!r} -> {query!r}): {score:.4f}, "
              f"mask covers {ours.mask.mean():.3f}")
        assert score >= 0.95


def test_mask_stages(parts, latents):
    stages = de.generate_mask(parts, latents, [p[0] for p in PAIRS], [p[1] for p in PAIRS], num_draws=3,
                              threshold=0.3, generator=torch.Generator().manual_seed(0))
    h = latents.shape[-1]
    for stage in (stages.difference, stages.clipped, stages.scaled, stages.mask):
        assert stage.shape == (2, h, h)
    assert (stages.clipped <= stages.difference + 1e-7).all()
    assert stages.scaled.min() >= 0 and stages.scaled.max() <= 1
    assert torch.equal(stages.mask, (stages.scaled > 0.3).float())
    assert torch.equal(stages.thresholded, stages.mask)  # no hole filling unless asked
    ring = torch.zeros(1, 7, 7)
    ring[0, 1:6, 1:6] = 1
    ring[0, 2:5, 2:5] = 0
    assert torch.equal(de.fill_holes(ring)[0, 1:6, 1:6], torch.ones(5, 5))
    same = de.generate_mask(parts, latents[:1], "a square", "a square", num_draws=2)
    assert same.difference.abs().max() < 1e-5  # R = Q: nothing to edit


def test_soft_edges():
    mask = torch.zeros(1, 5, 5)
    mask[0, 1:4, 1:4] = 1  # a 3x3 square: 8 edge pixels around 1 interior pixel (4-neighbours all inside)
    scaled = torch.full((1, 5, 5), 0.65)
    scaled[0, 1, 1], scaled[0, 2, 2] = 0.9, 0.1  # the interior pixel is 1 whatever its value
    weights = de.soft_edges(scaled, mask, threshold=0.5, soft_to=0.8)
    expected = mask * 0.5
    expected[0, 1, 1], expected[0, 2, 2] = 1.0, 1.0
    torch.testing.assert_close(weights, expected)


def test_soft_mask_stages(parts, latents):
    hard = de.generate_mask(parts, latents, "a red circle", "a blue circle", num_draws=2, threshold=0.3,
                            fill=True, generator=torch.Generator().manual_seed(0))
    soft = de.generate_mask(parts, latents, "a red circle", "a blue circle", num_draws=2, threshold=0.3,
                            fill=True, soft_to=0.9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(hard.weights, hard.mask) and torch.equal(soft.mask, hard.mask)
    assert torch.equal(soft.weights > 0, soft.mask > 0)  # same support, softer edge
    soft_edge = (soft.mask > 0) & (soft.weights < 1)
    assert soft_edge.any() and (soft.scaled[soft_edge] < 0.9).all()
    trajectory = de.invert(parts, latents, strength=0.5, num_steps=10)
    edited = de.decode(parts, trajectory, "a blue circle", soft.weights, 5.0, 10, 0.5)
    outside = (soft.weights == 0)[:, None].expand_as(edited)
    assert torch.equal(edited[outside], latents[outside])  # zero weight: the input, exactly


@pytest.mark.parametrize("soft_to", [0.2, 0.3, 1.5])
def test_bad_soft_to(parts, latents, soft_to):
    with pytest.raises(ValueError, match="soft_to must be"):
        de.generate_mask(parts, latents, "a", "b", threshold=0.3, soft_to=soft_to)


def test_ddim_move_is_ddim_step(parts):
    scheduler = DDIMScheduler.from_config(parts.scheduler.config)
    scheduler.set_timesteps(20)
    schedule = de.edit_schedule(parts, 20, 1.0)
    assert schedule.timesteps == sorted(int(t) for t in scheduler.timesteps)
    x, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    for k in (20, 11, 1):
        expected = scheduler.step(eps, schedule.timesteps[k - 1], x).prev_sample
        ours = de.ddim_move(x, eps, schedule.alphas[k], schedule.alphas[k - 1])
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    clipping = DDIMScheduler.from_config({**parts.scheduler.config, "clip_sample": True})
    clipping.set_timesteps(20)
    expected = clipping.step(3 * eps, schedule.timesteps[-1], x).prev_sample
    ours = de.ddim_move(x, 3 * eps, schedule.alphas[-1], schedule.alphas[-2], clip=1.0)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_inversion_matches_diffusers(parts, pipe, latents):
    trajectory = de.invert(parts, latents[:1], strength=0.6, num_steps=20)
    theirs = pipe.invert(image=latents[:1], prompt="", guidance_scale=1.0, inpaint_strength=0.6,
                         num_inference_steps=20).latents  # (1, K, C, h, w), most noisy first
    assert trajectory.shape[0] == theirs.shape[1] + 1 == 13
    error = (trajectory[1:, 0] - theirs[0].flip(0)).abs().max().item()
    print(f"inversion vs diffusers invert: max abs difference {error:.2e}")
    assert error < 1e-4
    assert torch.equal(trajectory[0], latents[:1])


def test_inversion_then_decoding_reconstructs(parts):
    latents = torch.randn(2, *parts.latent_shape(1)[1:], generator=torch.Generator().manual_seed(0))
    trajectory = de.invert(parts, latents, strength=0.5, num_steps=20)
    rebuilt = de.decode(parts, trajectory, "", guidance_scale=1.0, num_steps=20, strength=0.5)
    relative = ((rebuilt - latents).norm() / latents.norm()).item()
    noised = de.add_noise(parts, latents, 0.5, 20, generator=torch.Generator().manual_seed(0))
    from_noise = de.decode(parts, noised, "", guidance_scale=1.0, num_steps=20, strength=0.5)
    baseline = ((from_noise - latents).norm() / latents.norm()).item()
    print(f"reconstruction: relative error {relative:.2e} after DDIM inversion, {baseline:.2e} after noising"
          f" (bound {RECONSTRUCTION_BOUND})")
    assert relative < RECONSTRUCTION_BOUND
    assert relative < baseline / 5


class LinearNoise(torch.nn.Module):
    """A stand-in UNet whose noise prediction is `slope` * x: the exact inverse step has a closed form."""

    def __init__(self, slope: float, config):
        super().__init__()
        self.slope, self.config = slope, config  # the real UNet's config gives the latent shape

    def forward(self, x, t, encoder_hidden_states=None):
        return SimpleNamespace(sample=self.slope * x)


def test_fixed_point_inversion_solves_the_exact_step(parts, latents):
    paper = de.invert(parts, latents, strength=0.5, num_steps=10)
    assert torch.equal(de.invert(parts, latents, 0.5, 10, fixed_point_iterations=0), paper)
    slope = 0.3
    linear = dataclasses.replace(parts, unet=LinearNoise(slope, parts.unet.config))
    schedule = de.edit_schedule(parts, 10, 0.5)
    exact = de.invert(linear, latents, strength=0.5, num_steps=10, fixed_point_iterations=40)
    approximate = de.invert(linear, latents, strength=0.5, num_steps=10)
    for k in range(1, len(schedule) + 1):
        # x_k = sqrt(a_k) (x_{k-1} - sqrt(1 - a_{k-1}) s x_k) / sqrt(a_{k-1}) + sqrt(1 - a_k) s x_k, solved
        below, above = float(schedule.alphas[k - 1]), float(schedule.alphas[k])
        ratio = (above / below) ** 0.5
        solved = ratio * exact[k - 1] / (1 + ratio * (1 - below) ** 0.5 * slope - (1 - above) ** 0.5 * slope)
        torch.testing.assert_close(exact[k], solved, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(approximate[-1], exact[-1], atol=1e-3)
    assert de.inversion_residuals(linear, exact, 10, 0.5).max() < 1e-5 < de.inversion_residuals(
        linear, approximate, 10, 0.5).min()
    rebuilt = de.decode(linear, exact, "", guidance_scale=1.0, num_steps=10, strength=0.5)
    torch.testing.assert_close(rebuilt, latents, atol=1e-5, rtol=1e-5)  # the exact inverse decodes back


@pytest.mark.parametrize("iterations", [-1, 1.5, True])
def test_bad_fixed_point_iterations(parts, latents, iterations):
    with pytest.raises(ValueError, match="fixed_point_iterations must be an integer"):
        de.invert(parts, latents, fixed_point_iterations=iterations)


def test_encoding_statistics_of_forward_noise(parts):
    latents = torch.randn(3, *parts.latent_shape(1)[1:], generator=torch.Generator().manual_seed(2)) * 0.5
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(3))
    schedule = de.edit_schedule(parts, 10, 0.7)
    levels = de.encoding_statistics(de.add_noise(parts, latents, 0.7, 10, noise=noise), schedule)
    assert len(levels) == len(schedule)
    for level, alpha in zip(levels, schedule.alphas[1:], strict=True):
        assert level.alpha_bar == pytest.approx(float(alpha))
        torch.testing.assert_close(level.noise_std, noise.double().flatten(1).std(1), atol=1e-5, rtol=1e-5)
        assert level.noise_correlation.abs().max() < 0.15  # white noise (256 pixels per channel)
        torch.testing.assert_close(level.std, level.expected_std, atol=0.03, rtol=0.03)
        expected = torch.full((3,), float(alpha), dtype=torch.float64)
        torch.testing.assert_close(level.effective_alpha_bar, expected, atol=0.02, rtol=0.1)
    # a scaled copy of the input and no noise: all signal
    still = torch.stack([latents, 0.5 * latents])
    (level,) = de.encoding_statistics(still, schedule)
    torch.testing.assert_close(level.effective_alpha_bar, torch.ones(3, dtype=torch.float64))


def test_neighbour_correlation_against_numpy():
    maps = torch.randn(2, 3, 6, 7, generator=torch.Generator().manual_seed(4)).cumsum(-1)  # correlated rows
    ours = de.neighbour_correlation(maps)
    for b in range(2):
        centred = (maps[b] - maps[b].mean(dim=(-2, -1), keepdim=True)).numpy()
        across = np.corrcoef(centred[..., 1:].ravel(), centred[..., :-1].ravel())[0, 1]
        down = np.corrcoef(centred[..., 1:, :].ravel(), centred[..., :-1, :].ravel())[0, 1]
        # np.corrcoef centres each slice again; ours keeps the per-map centring: equal up to that shift
        assert ours[b].item() == pytest.approx((across + down) / 2, abs=0.05)
    assert ours.min() > 0.2  # correlated along rows, not down columns


def test_unmasked_decoding_matches_diffusers(parts, pipe, latents):
    trajectory = de.invert(parts, latents[:1], strength=0.5, num_steps=10)
    ours = de.decode(parts, trajectory, "a blue circle", guidance_scale=5.0, num_steps=10, strength=0.5)
    ones = torch.ones(1, 1, *latents.shape[-2:])
    inverted = trajectory[1:].flip(0).transpose(0, 1)  # diffusers' layout: (B, K, ...), most noisy first
    theirs = pipe(prompt="a blue circle", mask_image=ones, image_latents=inverted, inpaint_strength=0.5,
                  num_inference_steps=10, guidance_scale=5.0, output_type="latent").images
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_mask_guidance_keeps_the_background(parts, latents):
    trajectory = de.invert(parts, latents, strength=0.5, num_steps=10)
    mask = torch.zeros(2, *latents.shape[-2:])
    mask[:, 4:10, 4:10] = 1
    edited, steps = de.decode(parts, trajectory, "a triangle", mask, 5.0, 10, 0.5, return_steps=True)
    outside = mask[:, None].expand_as(edited) == 0
    assert torch.equal(edited[outside], latents[outside])
    assert not torch.allclose(edited[~outside], latents[~outside])
    assert steps.shape[0] == 5
    for k in range(5):  # after step k the background is the inverted latent of the same noise level
        assert torch.equal(steps[k][outside], trajectory[4 - k][outside])


def test_add_noise_layout(parts, latents):
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))
    levels = de.add_noise(parts, latents, 0.5, 10, noise=noise)
    schedule = de.edit_schedule(parts, 10, 0.5)
    assert levels.shape[0] == len(schedule) + 1 == 6
    expected = parts.scheduler.add_noise(latents, noise, torch.tensor(schedule.timesteps[-1:]))
    torch.testing.assert_close(levels[-1], expected)
    assert torch.equal(levels[0], latents)


def test_diffedit_end_to_end(parts):
    images = torch.rand(2, 3, parts.image_size, parts.image_size) * 2 - 1
    for use_mask, encoding in ((True, "ddim"), (False, "noise")):
        result = de.diffedit(parts, images, ["a red circle", "a square"], ["a blue circle", "a triangle"],
                             num_steps=10, num_draws=2, guidance_scale=3.0, use_mask=use_mask,
                             encoding=encoding, generator=torch.Generator().manual_seed(0))
        assert result.images.shape == images.shape
        assert result.images.abs().max() <= 1
        assert (result.mask is not None) == use_mask


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_bad_threshold(parts, latents, threshold):
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        de.generate_mask(parts, latents, "a", "b", threshold=threshold)


@pytest.mark.parametrize("strength", [0, -0.5, 1.5])
def test_bad_strength(parts, latents, strength):
    with pytest.raises(ValueError, match=r"strength must be in \(0, 1\]"):
        de.invert(parts, latents, strength=strength)
    with pytest.raises(ValueError, match=r"strength must be in \(0, 1\]"):
        de.generate_mask(parts, latents, "a", "b", strength=strength)


def test_bad_image_size(parts):
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, 32, 32\)"):
        de.diffedit(parts, torch.zeros(1, 3, 48, 48), "a", "b")
    with pytest.raises(ValueError, match="latents must have shape"):
        de.invert(parts, torch.zeros(1, 4, 8, 8))


def test_bad_prompts_and_encoding(parts, latents):
    with pytest.raises(ValueError, match="one per image"):
        de.generate_mask(parts, latents, ["a"], "b")
    with pytest.raises(ValueError, match="encoding must be"):
        de.diffedit(parts, torch.zeros(1, 3, 32, 32), "a", "b", encoding="magic")


def test_diffusers_background_lags_one_level(parts, pipe, latents):
    # diffusers' __call__ blends with the inverted latent of the level a step starts from, so its
    # background ends at the first inverted level; ours ends on the input itself
    trajectory = de.invert(parts, latents[:1], strength=0.5, num_steps=10)
    mask = torch.zeros(1, *latents.shape[-2:])
    mask[:, 4:10, 4:10] = 1
    ours = de.decode(parts, trajectory, "a triangle", mask, 5.0, 10, 0.5)
    inverted = trajectory[1:].flip(0).transpose(0, 1)
    theirs = pipe(prompt="a triangle", mask_image=mask[:, None], image_latents=inverted, inpaint_strength=0.5,
                  num_inference_steps=10, guidance_scale=5.0, output_type="latent").images
    outside = mask[:, None].expand_as(ours) == 0
    assert torch.equal(ours[outside], latents[:1][outside])
    assert torch.equal(theirs[outside], trajectory[1][outside])


def test_shape_edits_change_one_word():
    edits = de.shape_edits(12, seed=3)
    assert len(edits) == 12 and edits.images.shape == (12, 3, 32, 32)
    for reference, query, kind in zip(edits.reference, edits.query, edits.kind, strict=True):
        changed = [(a, b) for a, b in zip(reference.split(), query.split(), strict=True) if a != b]
        assert len(changed) == 1
        assert kind == ("colour" if changed[0][0] in ("red", "green", "blue", "yellow") else "shape")
    assert edits.true_masks.flatten(1).any(1).all()
    resized = de.shape_edits(4, seed=3, image_size=64)
    assert resized.images.shape == (4, 3, 64, 64) and resized.true_masks.shape == (4, 64, 64)
    assert resized.edit_masks.shape == resized.same_size_masks.shape == (4, 64, 64)


def test_edit_masks_hold_old_and_new_shape():
    from fromscratch.diffusion.shapes import SHAPES, SIZE_RADIUS, SIZES, make_shapes, shape_mask

    data = make_shapes(40, seed=5, p_two=0)
    for i in range(len(data)):  # the recorded centre and half-width redraw the shape's exact mask
        (cx, cy), radius = data.centre[i, 0], data.radius[i, 0]
        redrawn = shape_mask(SHAPES[data.shape[i, 0]], cx, cy, radius, 32)
        assert np.array_equal(redrawn, data.masks[i, 0].numpy())
    edits = de.shape_edits(40, seed=5, p_two=0)
    for i, kind in enumerate(edits.kind):
        (cx, cy), radius = data.centre[i, 0], data.radius[i, 0]
        largest = SIZE_RADIUS[SIZES[data.size[i, 0]]][1]
        assert radius <= largest
        new_kind = SHAPES[edits.target_shape[i]]
        for masks, half_width in ((edits.same_size_masks, radius), (edits.edit_masks, largest)):
            expected = edits.true_masks[i].clone()
            if kind == "shape":  # a recolour keeps the outline
                expected |= torch.from_numpy(shape_mask(new_kind, cx, cy, half_width, 32))
            assert torch.equal(masks[i], expected)
        assert torch.equal(edits.edit_masks[i] & edits.same_size_masks[i], edits.same_size_masks[i])
    nested = ((edits.same_size_masks, edits.true_masks), (edits.edit_masks, edits.same_size_masks))
    for masks, smaller in nested:  # a new kind sticks out of the old outline, the largest size out of that
        assert sum(int((masks[i] & ~smaller[i]).sum()) for i in range(1, 40, 2)) > 0


def test_metrics():
    true = torch.zeros(2, 8, 8, dtype=torch.bool)
    true[:, 2:6, 2:6] = True
    predicted = true.clone()
    predicted[1, 2:6, 2:4] = False  # half of the square
    torch.testing.assert_close(de.mask_iou(predicted, true), torch.tensor([1.0, 0.5]))
    original = torch.zeros(2, 3, 8, 8)
    edited = original.clone()
    edited[:, :, 2:6, 2:6] = 1  # inside the true mask: does not count
    assert de.background_psnr(edited, original, true) == float("inf")
    edited[:, :, 0, :] += 0.2  # outside: error 0.1 in [0, 1] units on 8 of 48 pixels
    expected = 10 * torch.log10(torch.tensor(1 / (0.01 * 8 / 48))).item()
    assert abs(de.background_psnr(edited, original, true) - expected) < 1e-4
    errors = de.background_errors(edited, original, true)
    torch.testing.assert_close(errors, torch.tensor([[0.01 * 24, 144.0]] * 2, dtype=torch.float64))
    assert de.psnr_of_errors(errors[:1]) == pytest.approx(expected)  # each image alone: the same error
    assert de.grow_masks(true, 1).sum(dim=(1, 2)).tolist() == [36, 36]


def test_edit_success_reads_the_region():
    from fromscratch.diffusion.classifier import ShapesClassifier

    edits = de.shape_edits(4, seed=0)
    classifier = ShapesClassifier().eval()
    with torch.no_grad():  # a classifier that always answers (shape 1, colour 2)
        classifier.shape_head.weight.zero_()
        classifier.shape_head.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
        classifier.colour_head.weight.zero_()
        classifier.colour_head.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0]))
    success = de.edit_success(classifier, edits.images, edits)
    expected = (edits.target_shape == 1) & (edits.target_colour == 2)
    assert torch.equal(success, expected)


def test_recolour_share_reads_the_shape_colour():
    from fromscratch.diffusion.shapes import COLOUR_RGB, COLOURS

    edits = de.shape_edits(6, seed=0)
    recolour = torch.tensor([kind == "colour" for kind in edits.kind])
    unchanged = de.recolour_share(edits.images, edits)
    assert torch.isnan(unchanged[~recolour]).all()
    assert (unchanged[recolour] == 0).all()  # every pixel still has the old colour
    painted, expected = edits.images.clone(), torch.zeros(len(edits))
    for i in range(len(edits)):
        rgb = torch.tensor(COLOUR_RGB[COLOURS[int(edits.target_colour[i])]]) * 2 - 1
        lower = edits.true_masks[i].clone()
        lower[: lower.shape[0] // 2] = False  # paint the lower half of the shape only
        painted[i][:, lower] = rgb[:, None]
        expected[i] = lower.sum() / edits.true_masks[i].sum()
    torch.testing.assert_close(de.recolour_share(painted, edits)[recolour], expected[recolour])
    with pytest.raises(ValueError, match="one image per edit"):
        de.recolour_share(edits.images[:2], edits)
