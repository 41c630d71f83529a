"""DiffEdit (Couairon et al. 2023): edit an image from text, with a mask the model finds by itself.

Three steps, each a function that takes the Stable Diffusion parts (`SDParts`) as its first argument,
so the same code runs the mini SD offline and the real SD v1-4 on a GPU:

1. `generate_mask`: noise the input to 50%, predict the noise under the reference text R and the
   query text Q, and keep where they disagree.
2. `invert`: DDIM inversion of the input to the encoding ratio r with the unconditional model
   (or `add_noise`, plain forward diffusion, for the ablation).
3. `decode`: DDIM decoding conditioned on Q with classifier-free guidance; outside the mask the latent
   is replaced at every step by the inverted latent of the same timestep.

`diffedit` chains them. Everything is batched: one prompt pair per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Parts = Any  # fromscratch.diffusion.parts.SDParts (duck-typed: unet, scheduler, encode_text, ...)


# ----------------------------------------------------------------------------- checks

def check_fraction(value: float, name: str, low_open: bool = False) -> float:
    """`value` as a float in [0, 1] (or (0, 1] with `low_open`), else a one-line ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    ok = (0 < value <= 1) if low_open else (0 <= value <= 1)
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return float(value)


def check_images(parts: Parts, images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, S, S) in [-1, 1] with S = parts.image_size, else a one-line error."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (B, 3, H, W) in [-1, 1], got {type(images).__name__}")
    if images.ndim == 3:
        images = images[None]
    size = parts.image_size
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (size, size):
        raise ValueError(f"images must have shape (B, 3, {size}, {size}) for this model, got "
                         f"{tuple(images.shape)}; resize them to {size}x{size} first")
    return images


def check_latents(parts: Parts, latents: torch.Tensor) -> torch.Tensor:
    """Latents of the shape the UNet expects, else a one-line error."""
    expected = tuple(parts.latent_shape(latents.shape[0]))
    if tuple(latents.shape) != expected:
        raise ValueError(f"latents must have shape {expected} for this model, got {tuple(latents.shape)}")
    return latents


def as_prompts(prompts: str | list[str], batch: int, name: str) -> list[str]:
    """One prompt per image: a string is repeated, a list must have one entry per image."""
    if isinstance(prompts, str):
        return [prompts] * batch
    prompts = list(prompts)
    if len(prompts) != batch:
        raise ValueError(f"{name} has {len(prompts)} prompts for {batch} images; give one per image")
    return prompts


# ----------------------------------------------------------------------------- building blocks

@dataclass
class Schedule:
    """The noise levels of an edit: K DDIM timesteps and the signal fraction of each level.

    Level 0 is the clean end (DDIM's final alpha), level k the k-th smallest timestep. Decoding steps
    from level k to k - 1 with the noise predicted at timesteps[k - 1]; inversion walks the same
    levels upwards (diffusers' DDIMScheduler and DDIMInverseScheduler use exactly these levels).
    """

    timesteps: list[int]  # ascending: t_1 < ... < t_K
    alphas: torch.Tensor  # (K + 1,) float64 alpha_bar of levels 0..K
    clip: float | None = None  # clamp of the x0 estimate (the scheduler's clip_sample), None: no clamp

    def __len__(self) -> int:
        return len(self.timesteps)


def edit_schedule(parts: Parts, num_steps: int, strength: float) -> Schedule:
    """The schedule of an edit that starts at `strength` of the way to pure noise.

    Same rule as diffusers' img2img and DiffEdit pipelines: the last int(num_steps * strength) of the
    `num_steps` DDIM timesteps. A fresh scheduler is used: the parts' own one is never mutated.
    """
    strength = check_fraction(strength, "strength", low_open=True)
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    scheduler = type(parts.scheduler).from_config(parts.scheduler.config)
    scheduler.set_timesteps(num_steps)
    count = min(int(num_steps * strength), num_steps)
    if count == 0:
        raise ValueError(f"strength {strength} with {num_steps} steps leaves no step; raise one of them")
    timesteps = [int(t) for t in scheduler.timesteps[num_steps - count:].flip(0)]
    stride = scheduler.config.num_train_timesteps // num_steps
    cumprod = scheduler.alphas_cumprod.to(torch.float64)
    final = torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float64)
    below = [cumprod[t - stride] if t - stride >= 0 else final for t in timesteps[:1]]
    clip = scheduler.config.clip_sample_range if scheduler.config.clip_sample else None
    return Schedule(timesteps, torch.stack([*below, *(cumprod[t] for t in timesteps)]), clip)


def ddim_move(latents: torch.Tensor, eps: torch.Tensor, alpha_from: torch.Tensor,
              alpha_to: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0) from noise level `alpha_from` to `alpha_to`, either way.

    x0 = (x - sqrt(1 - a_from) eps) / sqrt(a_from), clamped to [-clip, clip] if `clip` is given (as
    DDIMScheduler does with clip_sample); x' = sqrt(a_to) x0 + sqrt(1 - a_to) eps.
    """
    alpha_from, alpha_to = float(alpha_from), float(alpha_to)
    x0 = (latents - (1 - alpha_from) ** 0.5 * eps) / alpha_from ** 0.5
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    return alpha_to ** 0.5 * x0 + (1 - alpha_to) ** 0.5 * eps


@torch.no_grad()
def predict_noise(parts: Parts, latents: torch.Tensor, timestep: int | torch.Tensor,
                  context: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """eps_theta(latents, t, context), in chunks of `batch_size` images to bound memory."""
    if parts.scheduler.config.prediction_type != "epsilon":
        raise ValueError(f"DiffEdit here needs an epsilon-prediction model, this one predicts "
                         f"{parts.scheduler.config.prediction_type!r}")
    unet = parts.unet
    latents = latents.to(parts.device, parts.dtype)
    context = context.to(parts.device, parts.dtype)
    t = torch.as_tensor(timestep, device=parts.device)
    step = batch_size or latents.shape[0]
    outputs = [unet(latents[i:i + step], t, encoder_hidden_states=context[i:i + step]).sample
               for i in range(0, latents.shape[0], step)]
    return torch.cat(outputs).float()


def embed(parts: Parts, *prompt_lists: list[str]) -> list[torch.Tensor]:
    """Text embeddings of several prompt lists, encoded in one call so they share a length."""
    flat = [p for prompts in prompt_lists for p in prompts]
    embeddings = parts.encode_text(flat)
    out, start = [], 0
    for prompts in prompt_lists:
        out.append(embeddings[start:start + len(prompts)])
        start += len(prompts)
    return out


@torch.no_grad()
def encode(parts: Parts, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Latents of images in [-1, 1] (checked for size), `batch_size` images at a time."""
    images = check_images(parts, images)
    step = batch_size or len(images)
    return torch.cat([parts.encode_images(images[i:i + step].to(parts.device, parts.dtype)).float()
                      for i in range(0, len(images), step)])


@torch.no_grad()
def to_images(parts: Parts, latents: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Decoded images (B, 3, S, S) in [-1, 1], clamped, on the CPU, `batch_size` latents at a time."""
    step = batch_size or len(latents)
    return torch.cat([parts.decode_latents(latents[i:i + step].to(parts.device, parts.dtype)).float()
                      .clamp(-1, 1).cpu() for i in range(0, len(latents), step)])


# ----------------------------------------------------------------------------- step 1: the mask

@dataclass
class MaskStages:
    """Every stage of the mask, for pictures: all (B, h, w) at latent resolution."""

    difference: torch.Tensor  # mean over draws and channels of |eps_Q - eps_R|
    clipped: torch.Tensor  # extremes removed: clamped at clip_ratio * the image's mean difference
    scaled: torch.Tensor  # rescaled to [0, 1]
    thresholded: torch.Tensor  # scaled > threshold, as 0./1.
    mask: torch.Tensor  # the mask: thresholded, with enclosed holes filled if asked
    weights: torch.Tensor  # what decoding blends with: the mask, with a ramp on its edge if soft_to is set
    timestep: int  # the timestep the input was noised to


def soft_edges(scaled: torch.Tensor, mask: torch.Tensor, threshold: float, soft_to: float) -> torch.Tensor:
    """Blend weights of (B, h, w) 0/1 masks: 1 inside, 0 outside, a ramp on the edge.

    The edge is the mask's pixels with one of their 4 neighbours outside it (never a filled hole: those
    are the regions with no 4-connected path out); there the weight rises linearly with the rescaled
    map `scaled`, from 0 at `threshold` to 1 at `soft_to`.
    """
    mask = mask.float()
    padded = F.pad(mask, (1, 1, 1, 1), value=1.0)  # beyond the image border counts as inside
    neighbours = torch.stack([padded[:, :-2, 1:-1], padded[:, 2:, 1:-1],  # above, below
                              padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]])  # left, right
    edge = (mask > 0) & (neighbours.amin(dim=0) == 0)
    ramp = ((scaled - threshold) / (soft_to - threshold)).clamp(0, 1)
    return torch.where(edge, ramp, mask)


def fill_holes(masks: torch.Tensor) -> torch.Tensor:
    """(B, h, w) 0/1 masks with every region they enclose filled in (scipy's binary_fill_holes)."""
    from scipy.ndimage import binary_fill_holes

    filled = [binary_fill_holes(m.bool().numpy()) for m in masks.cpu()]
    return torch.from_numpy(np.stack(filled)).float()


@torch.no_grad()
def generate_mask(parts: Parts, latents: torch.Tensor, reference: str | list[str], query: str | list[str],
                  num_draws: int = 10, strength: float = 0.5, threshold: float = 0.5,
                  clip_ratio: float = 3.0, num_steps: int = 50, noise: torch.Tensor | None = None,
                  generator: torch.Generator | None = None, batch_size: int | None = None,
                  fill: bool = False, soft_to: float | None = None) -> MaskStages:
    """DiffEdit step 1: where do the noise predictions under R and under Q disagree?

    The input latent is noised to `strength` (n = `num_draws` noise draws per image, or the given
    `noise` of shape (B * n, C, h, w), image-major); the UNet predicts the noise under R and under Q;
    |eps_Q - eps_R| is averaged over draws and channels, clamped at `clip_ratio` times its mean
    (removes extremes, as diffusers does), divided by that clamp (rescale to [0, 1]) and thresholded.
    `fill` fills the holes the mask encloses (not in the paper: flat-coloured objects light up at
    their outline more than inside). `soft_to` (not in the paper either) softens the mask's edge:
    `weights` rise from 0 at the threshold to 1 at `soft_to` (see `soft_edges`); None keeps it hard.
    """
    threshold = check_fraction(threshold, "threshold")
    if soft_to is not None and not threshold < check_fraction(soft_to, "soft_to"):
        raise ValueError(f"soft_to must be above the threshold {threshold}, got {soft_to}; "
                         "or None for a hard mask")
    check_latents(parts, latents)
    if latents.shape[0] == 0:
        raise ValueError("latents holds no image (batch of 0); give at least one")
    if not isinstance(num_draws, int) or num_draws < 1:
        raise ValueError(f"num_draws must be a positive integer, got {num_draws!r}")
    if clip_ratio <= 0:
        raise ValueError(f"clip_ratio must be positive, got {clip_ratio}")
    batch = latents.shape[0]
    reference = as_prompts(reference, batch, "reference")
    query = as_prompts(query, batch, "query")
    timestep = edit_schedule(parts, num_steps, strength).timesteps[-1]

    repeated = latents.float().repeat_interleave(num_draws, dim=0)
    if noise is None:
        noise = torch.randn(repeated.shape, generator=generator)
    if tuple(noise.shape) != tuple(repeated.shape):
        raise ValueError(f"noise must have shape {tuple(repeated.shape)} (images x draws), "
                         f"got {tuple(noise.shape)}")
    noisy = parts.scheduler.add_noise(repeated, noise.to(repeated), torch.tensor([timestep]))
    ref_context, query_context = embed(parts, reference, query)
    context = torch.cat([ref_context.repeat_interleave(num_draws, 0),
                         query_context.repeat_interleave(num_draws, 0)])
    eps = predict_noise(parts, torch.cat([noisy, noisy]), timestep, context, batch_size)
    eps_ref, eps_query = eps.chunk(2)

    size = eps.shape[-3:]
    difference = (eps_query - eps_ref).abs().reshape(batch, num_draws, *size).mean(dim=(1, 2))
    limit = difference.mean(dim=(1, 2), keepdim=True) * clip_ratio
    clipped = torch.minimum(difference, limit)
    scaled = clipped / limit
    thresholded = (scaled > threshold).float().cpu()
    mask = fill_holes(thresholded) if fill else thresholded
    scaled = scaled.cpu()
    weights = mask if soft_to is None else soft_edges(scaled, mask, threshold, soft_to)
    return MaskStages(difference.cpu(), clipped.cpu(), scaled, thresholded, mask, weights, timestep)


# ----------------------------------------------------------------------------- step 2: encoding

@torch.no_grad()
def invert(parts: Parts, latents: torch.Tensor, strength: float = 0.5, num_steps: int = 50,
           prompt: str | list[str] = "", batch_size: int | None = None,
           fixed_point_iterations: int = 0) -> torch.Tensor:
    """DiffEdit step 2: DDIM inversion (unconditional by default) up to the encoding ratio `strength`.

    Returns the trajectory (K + 1, B, C, h, w) in order of increasing noise: [0] is the input, [k] the
    latent at level k of `edit_schedule`, [K] the starting point of decoding. Each step runs the DDIM
    update backwards, with the noise predicted at the target timestep (as diffusers'
    DDIMInverseScheduler does): eps(x_{k-1}, t_k) stands in for the unknown eps(x_k, t_k).
    `fixed_point_iterations` > 0 (not in the paper) then solves the exact step
    x_k = move(x_{k-1}, eps(x_k, t_k)) by that many fixed-point iterations: the x_k that one DDIM
    decoding step maps back to x_{k-1}. Each iteration costs one more UNet call per level.
    """
    check_latents(parts, latents)
    if isinstance(fixed_point_iterations, bool) or not isinstance(fixed_point_iterations, int) \
            or fixed_point_iterations < 0:
        raise ValueError(f"fixed_point_iterations must be an integer >= 0 (0: the paper's inversion), "
                         f"got {fixed_point_iterations!r}")
    schedule = edit_schedule(parts, num_steps, strength)
    (context,) = embed(parts, as_prompts(prompt, latents.shape[0], "prompt"))
    x = latents.float().to(parts.device)
    trajectory = [x]
    for k, t in enumerate(schedule.timesteps, start=1):
        below, above = schedule.alphas[k - 1], schedule.alphas[k]
        guess = ddim_move(x, predict_noise(parts, x, t, context, batch_size), below, above, schedule.clip)
        for _ in range(fixed_point_iterations):
            guess = ddim_move(x, predict_noise(parts, guess, t, context, batch_size), below, above,
                              schedule.clip)
        x = guess
        trajectory.append(x)
    return torch.stack(trajectory)


def add_noise(parts: Parts, latents: torch.Tensor, strength: float = 0.5, num_steps: int = 50,
              noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The ablation's encoding: forward diffusion q(x_t | x_0) with one noise draw, at every edit timestep.

    Same layout as `invert`'s trajectory, so `decode` takes either.
    """
    check_latents(parts, latents)
    schedule = edit_schedule(parts, num_steps, strength)
    x = latents.float()
    if noise is None:
        noise = torch.randn(x.shape, generator=generator)
    noise = noise.to(x)
    levels = [x] + [float(a) ** 0.5 * x + float(1 - a) ** 0.5 * noise for a in schedule.alphas[1:]]
    return torch.stack(levels)


@dataclass
class LevelStatistics:
    """How much an encoded latent x_k looks like the forward process at its level: (B,) per image."""

    alpha_bar: float  # the schedule's signal fraction at this level
    std: torch.Tensor  # std of x_k over its entries
    expected_std: torch.Tensor  # what forward noise gives: sqrt(alpha_bar var(x_0) + 1 - alpha_bar)
    noise_std: torch.Tensor  # std of the implied noise (x_k - sqrt(alpha_bar) x_0) / sqrt(1 - alpha_bar): 1
    noise_correlation: torch.Tensor  # its correlation between neighbouring pixels: 0 for Gaussian noise
    effective_alpha_bar: torch.Tensor  # c^2 / (c^2 + var(x_k - c x_0)), c the least-squares fit of x_0


def neighbour_correlation(maps: torch.Tensor) -> torch.Tensor:
    """(B,) correlation of (B, C, h, w) maps between horizontally and vertically adjacent pixels (mean)."""
    centred = maps - maps.mean(dim=(-2, -1), keepdim=True)

    def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dim=(1, 2, 3)) / (a.pow(2).sum(dim=(1, 2, 3)) * b.pow(2).sum(dim=(1, 2, 3))).sqrt()

    return (correlation(centred[..., :, 1:], centred[..., :, :-1])
            + correlation(centred[..., 1:, :], centred[..., :-1, :])) / 2


def encoding_statistics(trajectory: torch.Tensor, schedule: Schedule) -> list[LevelStatistics]:
    """Statistics of every level k >= 1 of an encoding trajectory (from `invert` or `add_noise`).

    Forward diffusion gives x_k = sqrt(a) x_0 + sqrt(1 - a) eps with Gaussian eps: these numbers say
    how far an encoding is from that at the schedule's a = alpha_bar of each level.
    """
    if trajectory.shape[0] > len(schedule) + 1:
        raise ValueError(f"trajectory has {trajectory.shape[0]} levels, the schedule {len(schedule) + 1}")
    x0 = trajectory[0].double().cpu()
    flat_x0 = x0.flatten(1)
    out = []
    for k in range(1, trajectory.shape[0]):
        alpha = float(schedule.alphas[k])
        x = trajectory[k].double().cpu()
        noise = (x - alpha ** 0.5 * x0) / (1 - alpha) ** 0.5
        coefficient = (x.flatten(1) * flat_x0).sum(1) / (flat_x0 * flat_x0).sum(1)
        residual = x.flatten(1) - coefficient[:, None] * flat_x0
        out.append(LevelStatistics(
            alpha, x.flatten(1).std(1), (alpha * flat_x0.var(1) + 1 - alpha).sqrt(), noise.flatten(1).std(1),
            neighbour_correlation(noise), coefficient ** 2 / (coefficient ** 2 + residual.var(1))))
    return out


@torch.no_grad()
def inversion_residuals(parts: Parts, trajectory: torch.Tensor, num_steps: int, strength: float,
                        prompt: str | list[str] = "", batch_size: int | None = None) -> torch.Tensor:
    """(K, B): how far one DDIM decoding step from level k lands from level k - 1, relative to its norm.

    Zero for an exact inverse: the question `invert` answers approximately unless it iterates.
    """
    schedule = edit_schedule(parts, num_steps, strength)
    if trajectory.shape[0] != len(schedule) + 1:
        raise ValueError(f"trajectory has {trajectory.shape[0]} levels, the edit needs {len(schedule) + 1}")
    (context,) = embed(parts, as_prompts(prompt, trajectory.shape[1], "prompt"))
    misses = []
    for k, t in enumerate(schedule.timesteps, start=1):
        x = trajectory[k].float().to(parts.device)
        back = ddim_move(x, predict_noise(parts, x, t, context, batch_size), schedule.alphas[k],
                         schedule.alphas[k - 1], schedule.clip)
        below = trajectory[k - 1].float().to(back.device)
        misses.append((back - below).flatten(1).norm(dim=1) / below.flatten(1).norm(dim=1))
    return torch.stack(misses).cpu()


# ----------------------------------------------------------------------------- step 3: decoding

@torch.no_grad()
def decode(parts: Parts, trajectory: torch.Tensor, query: str | list[str], mask: torch.Tensor | None = None,
           guidance_scale: float = 7.5, num_steps: int = 50, strength: float = 0.5,
           batch_size: int | None = None, return_steps: bool = False) -> torch.Tensor | tuple:
    """DiffEdit step 3: DDIM decoding from trajectory[-1] conditioned on Q, with mask guidance.

    After every step, outside the mask (mask = 0) the latent is replaced by the encoded latent of the
    same timestep, trajectory[k]; the last step lands on the input itself. A mask with values between
    0 and 1 (soft edges) blends the two in that proportion: x <- m x + (1 - m) trajectory[k].
    `mask=None` decodes freely (SDEdit, or "encoding only"). guidance_scale 1 means no classifier-free
    guidance (one UNet call).
    Returns the edited latents (and, with `return_steps`, the latent after every step).
    """
    schedule = edit_schedule(parts, num_steps, strength)
    if trajectory.shape[0] != len(schedule) + 1:
        raise ValueError(f"trajectory has {trajectory.shape[0]} levels, the edit needs {len(schedule) + 1}: "
                         "use the same num_steps and strength for encoding and decoding")
    batch = trajectory.shape[1]
    query = as_prompts(query, batch, "query")
    use_cfg = guidance_scale != 1
    uncond, cond = embed(parts, [""] * batch, query)
    context = torch.cat([uncond, cond]) if use_cfg else cond
    if mask is not None:
        mask = mask.float().to(parts.device)
        mask = mask[:, None] if mask.ndim == 3 else mask
        if mask.shape[0] != batch or tuple(mask.shape[-2:]) != tuple(trajectory.shape[-2:]):
            raise ValueError(f"mask must be (B, h, w) = ({batch}, {trajectory.shape[-2]}, "
                             f"{trajectory.shape[-1]}), got {tuple(mask.shape)}")
    x = trajectory[-1].float().to(parts.device)
    steps = []
    for k in range(len(schedule), 0, -1):
        t = schedule.timesteps[k - 1]
        model_input = torch.cat([x, x]) if use_cfg else x
        eps = predict_noise(parts, model_input, t, context, batch_size)
        if use_cfg:
            eps_uncond, eps_cond = eps.chunk(2)
            eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        x = ddim_move(x, eps, schedule.alphas[k], schedule.alphas[k - 1], schedule.clip)
        if mask is not None:  # outside the mask: the encoded input at the level just reached
            x = mask * x + (1 - mask) * trajectory[k - 1].to(x)
        if return_steps:
            steps.append(x.cpu())
    return (x, torch.stack(steps)) if return_steps else x


# ----------------------------------------------------------------------------- all together

@dataclass
class EditResult:
    """What `diffedit` produced: the edited images and what led to them."""

    images: torch.Tensor  # (B, 3, S, S) in [-1, 1]
    latents: torch.Tensor
    mask: MaskStages | None
    trajectory: torch.Tensor


def upsample_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """A latent-resolution (B, h, w) map to (B, size, size) by bilinear interpolation."""
    return F.interpolate(mask[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]


@torch.no_grad()
def diffedit(parts: Parts, images: torch.Tensor, reference: str | list[str], query: str | list[str],
             strength: float = 0.5, num_steps: int = 50, guidance_scale: float = 7.5,
             use_mask: bool = True, encoding: str = "ddim", num_draws: int = 10, threshold: float = 0.5,
             mask_strength: float = 0.5, fill: bool = False, soft_to: float | None = None,
             generator: torch.Generator | None = None, batch_size: int | None = None) -> EditResult:
    """Edit `images` from `reference` to `query`: mask, encode, decode with mask guidance.

    `use_mask=False` and `encoding="noise"` give the paper's ablations (SDEdit is both).
    """
    if encoding not in ("ddim", "noise"):
        raise ValueError(f"encoding must be 'ddim' (DDIM inversion) or 'noise' (SDEdit-style), "
                         f"got {encoding!r}")
    threshold = check_fraction(threshold, "threshold")
    strength = check_fraction(strength, "strength", low_open=True)
    latents = encode(parts, images, batch_size)
    stages = None
    if use_mask:
        stages = generate_mask(parts, latents, reference, query, num_draws=num_draws, strength=mask_strength,
                               threshold=threshold, num_steps=num_steps, generator=generator,
                               batch_size=batch_size, fill=fill, soft_to=soft_to)
    if encoding == "ddim":
        trajectory = invert(parts, latents, strength, num_steps, batch_size=batch_size)
    else:
        trajectory = add_noise(parts, latents, strength, num_steps, generator=generator)
    edited = decode(parts, trajectory, query, stages.weights if stages else None, guidance_scale, num_steps,
                    strength, batch_size)
    return EditResult(to_images(parts, edited, batch_size), edited.cpu(), stages, trajectory.cpu())


# ----------------------------------------------------------------------------- measuring edits on shapes

@dataclass
class ShapeEdits:
    """Edit tasks on shapes images: change the colour or the kind of one shape, with the ground truth."""

    images: torch.Tensor  # (B, 3, S, S) in [-1, 1]
    reference: list[str]  # the caption of the input (R)
    query: list[str]  # the same caption with one word changed (Q)
    true_masks: torch.Tensor  # (B, S, S) bool: the shape being edited, as it is in the input
    edit_masks: torch.Tensor  # (B, S, S) bool: all a correct edit may change (old | new at any legal size)
    same_size_masks: torch.Tensor  # (B, S, S) bool: old shape | new shape at the old one's exact size
    target_shape: torch.Tensor  # (B,) index into shapes.SHAPES the edit asks for
    target_colour: torch.Tensor  # (B,) index into shapes.COLOURS
    kind: list[str]  # "colour" or "shape"

    def __len__(self) -> int:
        return len(self.reference)

    def subset(self, count: int) -> ShapeEdits:
        """The first `count` tasks."""
        return ShapeEdits(self.images[:count], self.reference[:count], self.query[:count],
                          self.true_masks[:count], self.edit_masks[:count], self.same_size_masks[:count],
                          self.target_shape[:count], self.target_colour[:count], self.kind[:count])


def replace_word(text: str, old: str, new: str) -> str:
    """`text` with the whole word `old` replaced once by `new`."""
    words = text.split(" ")
    if old not in words:
        raise ValueError(f"{old!r} is not a word of {text!r}")
    words[words.index(old)] = new
    return " ".join(words)


def shape_edits(n: int, seed: int = 0, image_size: int | None = None, p_two: float = 0.25) -> ShapeEdits:
    """`n` edits of shapes images (data seed `seed`): even ones recolour a shape, odd ones change its kind.

    In a two-shape image the edited shape is picked at random, and only its half of the caption changes.
    A new kind of shape does not fit the old outline (a triangle's corners stick out of a circle), and the
    words fix its size class, not its exact half-width (the dataset draws "large" anywhere from 7.5 to 9
    pixels). So the region a correct edit may change, `edit_masks`, is the old shape plus the new one at
    the same centre and at the largest half-width of the old shape's size class (smaller ones lie inside
    it), less any other shape; `same_size_masks` draws the new shape at the old one's exact half-width.
    For a recolour both are the old shape. `image_size` resizes images (bilinear) and masks (nearest)
    for a model that works at another size.
    """
    from fromscratch.diffusion.shapes import COLOURS, SHAPES, SIZE_RADIUS, SIZES, make_shapes, shape_mask

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of edits, got {n!r}")
    data = make_shapes(n, seed=seed, p_two=p_two)
    rng = torch.Generator().manual_seed(seed)
    reference, query, kinds, masks, regions, same_size, shapes_, colours = [], [], [], [], [], [], [], []
    for i in range(n):
        k = int(torch.randint(int(data.n_shapes[i]), (1,), generator=rng))
        shape, colour = SHAPES[data.shape[i, k]], COLOURS[data.colour[i, k]]
        halves = data.captions[i].split(" and ")
        if i % 2 == 0:
            others = [c for c in COLOURS if c != colour]
            new_colour = others[int(torch.randint(len(others), (1,), generator=rng))]
            halves[k] = replace_word(halves[k], colour, new_colour)
            new_shape, kind = shape, "colour"
        else:
            others = [s for s in SHAPES if s != shape]
            new_shape = others[int(torch.randint(len(others), (1,), generator=rng))]
            halves[k] = replace_word(halves[k], shape, new_shape)
            new_colour, kind = colour, "shape"
        reference.append(data.captions[i])
        query.append(" and ".join(halves))
        kinds.append(kind)
        old_mask = data.masks[i, k]
        masks.append(old_mask)
        if kind == "colour":  # the outline stays
            same_size.append(old_mask)
            regions.append(old_mask)
        else:
            (cx, cy), radius, size = data.centre[i, k], data.radius[i, k], data.images.shape[-1]
            largest = SIZE_RADIUS[SIZES[data.size[i, k]]][1] * size / 32
            others = data.masks[i].any(0) & ~old_mask
            for out, half_width in ((same_size, radius), (regions, largest)):
                new_mask = torch.from_numpy(shape_mask(new_shape, cx, cy, half_width, size))
                out.append(old_mask | (new_mask & ~others))
        shapes_.append(SHAPES.index(new_shape))
        colours.append(COLOURS.index(new_colour))
    images, all_masks = data.images, [torch.stack(m) for m in (masks, regions, same_size)]
    if image_size is not None and image_size != images.shape[-1]:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
        all_masks = [F.interpolate(m[:, None].float(), size=(image_size, image_size))[:, 0] > 0.5
                     for m in all_masks]
    return ShapeEdits(images, reference, query, *all_masks, torch.tensor(shapes_), torch.tensor(colours),
                      kinds)


def mask_iou(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per-image intersection over union of two (B, H, W) masks."""
    predicted, true = predicted.bool(), true.bool()
    union = (predicted | true).sum(dim=(1, 2)).clamp(min=1)
    return (predicted & true).sum(dim=(1, 2)) / union


def grow_masks(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """(B, H, W) bool masks grown by `pixels` in every direction (a square structuring element)."""
    if pixels == 0:
        return masks.bool()
    size = 2 * pixels + 1
    return F.max_pool2d(masks[:, None].float(), size, stride=1, padding=pixels)[:, 0] > 0


def background_errors(edited: torch.Tensor, original: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B, 2) float64: per image, the squared error outside `masks` (images taken to [0, 1]) and its count."""
    outside = (~masks.bool())[:, None].expand_as(original)
    error = ((edited.clamp(-1, 1) - original.clamp(-1, 1)) / 2).double().pow(2)
    return torch.stack([(error * outside).flatten(1).sum(1), outside.flatten(1).sum(1).double()], dim=1)


def psnr_of_errors(errors: torch.Tensor | np.ndarray) -> float:
    """Pooled PSNR (dB) of rows from `background_errors`: all pixels of all rows together."""
    errors = torch.as_tensor(errors, dtype=torch.float64)
    total = errors[:, 0].sum().item()
    return float("inf") if total == 0 else 10 * float(np.log10(errors[:, 1].sum().item() / total))


def background_psnr(edited: torch.Tensor, original: torch.Tensor, masks: torch.Tensor) -> float:
    """PSNR (dB, images taken to [0, 1]) of all pixels outside `masks` (B, H, W), pooled over the batch."""
    return psnr_of_errors(background_errors(edited, original, masks))


def recolour_share(edited: torch.Tensor, edits: ShapeEdits) -> torch.Tensor:
    """(B,) for each recolour: the share of the old shape's pixels nearest in RGB to the asked colour.

    A second reading of a recolour that needs no classifier: every pixel of the shape is given the
    nearest of the dataset's colours (`shapes.COLOUR_RGB`); 1 means all of the shape took the new colour.
    NaN for the edits that change the kind of a shape.
    """
    from fromscratch.diffusion.shapes import COLOUR_RGB, COLOURS

    if edited.shape[0] != len(edits) or edited.shape[-2:] != edits.true_masks.shape[-2:]:
        raise ValueError(f"edited must be one image per edit at the edits' size, got {tuple(edited.shape)} "
                         f"for {len(edits)} edits of {tuple(edits.true_masks.shape[-2:])}")
    palette = torch.tensor([COLOUR_RGB[c] for c in COLOURS], dtype=torch.float32)  # (4, 3)
    pixels = (edited.float().clamp(-1, 1).cpu() + 1) / 2  # (B, 3, H, W) in [0, 1]
    distances = ((pixels[:, None] - palette[None, :, :, None, None]) ** 2).sum(dim=2)  # (B, 4, H, W)
    nearest = distances.argmin(dim=1)  # (B, H, W)
    shape = edits.true_masks.bool()
    hits = ((nearest == edits.target_colour[:, None, None]) & shape).sum(dim=(1, 2)).float()
    share = hits / shape.sum(dim=(1, 2)).clamp(min=1)
    recolour = torch.tensor([kind == "colour" for kind in edits.kind])
    return torch.where(recolour, share, torch.full_like(share, float("nan")))


def edit_success(classifier: torch.nn.Module, edited: torch.Tensor, edits: ShapeEdits,
                 grow: int = 1) -> torch.Tensor:
    """Does the shapes classifier read the query's shape and colour in the edited region? (B,) bool.

    The region is the edit mask (old shape | new shape) grown by `grow` pixels (the model need not draw
    the new shape at exactly the old size); everything else is painted over, then the image is brought
    to the classifier's 32x32.
    """
    from fromscratch.diffusion.classifier import isolate_region, predict

    region = grow_masks(edits.edit_masks, grow)
    isolated = isolate_region(edited.clamp(-1, 1).float().cpu(), region)
    if isolated.shape[-1] != 32:
        isolated = F.interpolate(isolated, size=(32, 32), mode="area")
    shape, colour = predict(classifier, isolated)
    return (torch.from_numpy(shape) == edits.target_shape) & (torch.from_numpy(colour) == edits.target_colour)
