"""The Stable Diffusion sampling loop written out: prompts -> embeddings -> guided denoising -> images.

No pipeline class: encode the prompt and the unconditional (or negative) prompt, call the UNet once on
both, combine with classifier-free guidance eps = eps_u + s * (eps_c - eps_u), step the DDIM scheduler,
decode. img2img starts from an encoded input image noised to `strength` instead of pure noise. The
random draws follow diffusers' pipelines, so the same generator seed gives the same image.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from fromscratch.diffusion.parts import SDParts


def fresh_scheduler(parts: SDParts, num_steps: int) -> DDIMScheduler:
    """A copy of the parts' scheduler set to `num_steps` steps (the shared one is never mutated)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    scheduler = type(parts.scheduler).from_config(parts.scheduler.config)
    scheduler.set_timesteps(num_steps, device=parts.device)
    return scheduler


def prompt_embeddings(parts: SDParts, prompts: list[str],
                      negative_prompts: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(unconditional or negative, conditional) embeddings, each (B,T,D).

    The negative prompt simply takes the place of the empty prompt "".
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if negative_prompts is None:
        negative_prompts = [""] * len(prompts)
    negative_prompts = [negative_prompts] if isinstance(negative_prompts, str) else list(negative_prompts)
    if len(negative_prompts) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(negative_prompts)} negative prompts; "
                         "give one negative prompt per prompt")
    embeddings = parts.encode_text(negative_prompts + prompts)
    return embeddings[: len(prompts)], embeddings[len(prompts):]


def guided_noise(parts: SDParts, latents: torch.Tensor, t: torch.Tensor | int, uncond: torch.Tensor,
                 cond: torch.Tensor, guidance_scale: float | torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance: one batched UNet call on [uncond; cond], then eps_u + s * (eps_c - eps_u).

    `guidance_scale` is one number, or a (B,) tensor giving each sample its own s (a whole sweep in one
    batch). At s = 1 the formula gives eps_c, so only the conditional half is computed.
    """
    if isinstance(guidance_scale, torch.Tensor):
        guidance_scale = guidance_scale.to(latents).reshape(-1, *[1] * (latents.ndim - 1))
    elif guidance_scale == 1:
        return parts.unet(latents, t, encoder_hidden_states=cond, return_dict=False)[0]
    both = parts.unet(torch.cat([latents, latents]), t, encoder_hidden_states=torch.cat([uncond, cond]),
                      return_dict=False)[0]
    eps_u, eps_c = both.chunk(2)
    return eps_u + guidance_scale * (eps_c - eps_u)


def img2img_start(parts: SDParts, scheduler: DDIMScheduler, images: torch.Tensor, strength: float,
                  generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents of `images` noised to `strength`, and the timesteps left to denoise them.

    strength 1 starts from (almost) pure noise, strength 0.3 keeps most of the input: the loop then
    runs only the last int(num_steps * strength) steps. Draws: the VAE sample first, then the noise.
    """
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    num_steps = len(scheduler.timesteps)
    skipped = num_steps - min(int(num_steps * strength), num_steps)
    timesteps = scheduler.timesteps[skipped:]
    if len(timesteps) == 0:
        raise ValueError(f"strength {strength} with {num_steps} steps leaves no step to run; raise either")
    if hasattr(scheduler, "set_begin_index"):  # schedulers that count their own steps (not DDIM)
        scheduler.set_begin_index(skipped)
    latents = parts.encode_images(images, generator=generator)
    noise = randn_tensor(latents.shape, generator=generator, device=parts.device, dtype=parts.dtype)
    return scheduler.add_noise(latents, noise, timesteps[:1].repeat(len(latents))), timesteps


@torch.no_grad()
def generate(parts: SDParts, prompts: list[str], guidance_scale: float | torch.Tensor = 7.5,
             num_steps: int = 50, negative_prompts: list[str] | None = None,
             generator: torch.Generator | None = None,
             images: torch.Tensor | None = None, strength: float = 1.0, eta: float = 0.0,
             latents: torch.Tensor | None = None,
             callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
             return_latents: bool = False) -> torch.Tensor:
    """Images (B,3,H,W) in [-1,1] for `prompts`: text-to-image, or img2img when `images` is given.

    `callback(i, t, latents)` is called after each step (e.g. to record a denoising animation).
    `latents` overrides the starting noise of text-to-image. Returns the final latents instead of
    decoded images when `return_latents` is set.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    _check_generate_inputs(parts, prompts, guidance_scale, latents)
    scheduler = fresh_scheduler(parts, num_steps)
    uncond, cond = prompt_embeddings(parts, prompts, negative_prompts)
    if images is not None:
        if len(images) != len(prompts):
            raise ValueError(f"img2img needs one image per prompt, got {len(images)} images for "
                             f"{len(prompts)} prompts")
        latents, timesteps = img2img_start(parts, scheduler, images, strength, generator)
    else:
        timesteps = scheduler.timesteps
        if latents is None:
            latents = randn_tensor(parts.latent_shape(len(prompts)), generator=generator, device=parts.device,
                                   dtype=parts.dtype)
        latents = latents.to(parts.device, parts.dtype) * scheduler.init_noise_sigma
    for i, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(latents, t)
        eps = guided_noise(parts, model_input, t, uncond, cond, guidance_scale)
        latents = scheduler.step(eps, t, latents, eta=eta, generator=generator, return_dict=False)[0]
        if callback is not None:
            callback(i, t, latents)
    return latents if return_latents else parts.decode_latents(latents)


def _check_generate_inputs(parts: SDParts, prompts: list[str], guidance_scale: float | torch.Tensor,
                           latents: torch.Tensor | None) -> None:
    """One-line errors for an empty prompt list, and a guidance or latents tensor of the wrong shape."""
    if not prompts:
        raise ValueError("prompts is empty; give at least one prompt")
    batch = len(prompts)
    if isinstance(guidance_scale, torch.Tensor) and guidance_scale.numel() not in (1, batch):
        raise ValueError(f"guidance_scale has {guidance_scale.numel()} values for {batch} prompts; "
                         "give one number or one per prompt")
    if latents is not None and tuple(latents.shape) != tuple(parts.latent_shape(batch)):
        raise ValueError(f"latents must have shape {tuple(parts.latent_shape(batch))} for {batch} "
                         f"prompt(s) and this model, got {tuple(latents.shape)}")


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1,1] images -> [0,1], clamped (what diffusers' image processor returns with output_type='pt')."""
    return (images / 2 + 0.5).clamp(0, 1)
