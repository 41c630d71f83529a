"""DDPM ancestral and DDIM sampling written from the noise schedule, with diffusers' settings as arguments.

Each step is the paper's equation on the cumulative products alpha_bar_t of the schedule:

    x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t)        (from an eps prediction)
    DDPM:  x_prev = c0 x0_hat + ct x_t + sigma_t z,  a draw from q(x_prev | x_t, x0_hat) (Ho et al. eq. 7)
    DDIM:  x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps_hat + sigma z,
           sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev)
                                                                       (Song et al. 2021, eq. 12 and 16)

The settings diffusers exposes are plain arguments here: `timestep_spacing` (which timesteps the
sampler visits), `steps_offset`, `set_alpha_to_one` (what alpha_bar the last step lands on),
`clip_sample` (clamp x0_hat) and eta. The tests check every step against diffusers' DDPMScheduler and
DDIMScheduler on the same model output.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from fromscratch.diffusion.parts import SDParts
from fromscratch.diffusion.sampling import guided_noise, prompt_embeddings

SPACINGS = ("leading", "trailing", "linspace")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
KINDS = ("ddim", "ddpm")


@dataclass(frozen=True)
class Schedule:
    """The noise schedule: alpha_bar_t for t = 0..N-1 (float32), and alpha_bar after the last step."""

    alphas_cumprod: torch.Tensor
    final_alpha_cumprod: float

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def alpha_bar(self, t: int) -> torch.Tensor:
        """alpha_bar_t; t < 0 means "after the last step": 1 with set_alpha_to_one, else alpha_bar_0."""
        if t < 0:
            return torch.tensor(self.final_alpha_cumprod, dtype=self.alphas_cumprod.dtype)
        return self.alphas_cumprod[t]


def make_schedule(num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                  beta_schedule: str = "linear", set_alpha_to_one: bool = True) -> Schedule:
    """beta_t on N levels ("linear"; SD's "scaled_linear": linear in sqrt(beta)); alpha_bar = prod(1 - b)."""
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        roots = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float32)
        betas = roots ** 2
    else:
        raise ValueError(f"beta_schedule must be 'linear' or 'scaled_linear', got {beta_schedule!r}")
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return Schedule(alphas_cumprod, 1.0 if set_alpha_to_one else float(alphas_cumprod[0]))


def schedule_from_config(config: dict, set_alpha_to_one: bool | None = None) -> Schedule:
    """The schedule a diffusers scheduler config describes (`set_alpha_to_one` overrides the config's)."""
    one = config.get("set_alpha_to_one", True) if set_alpha_to_one is None else set_alpha_to_one
    return make_schedule(config["num_train_timesteps"], config["beta_start"], config["beta_end"],
                         config["beta_schedule"], one)


def timesteps(num_steps: int, num_train_timesteps: int = 1000, spacing: str = "leading",
              steps_offset: int = 0) -> torch.Tensor:
    """The timesteps a sampler visits, from the noisiest down (diffusers' `set_timesteps`).

    leading:  0, k, 2k, ... (k = N // n) plus `steps_offset`: never visits t = N-1 unless offset.
    trailing: N-1, N-1-N/n, ... (rounded): always starts at the noisiest level (Lin et al. 2024).
    linspace: n values evenly from 0 to N-1, rounded: starts at N-1, ends at 0.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if num_steps > num_train_timesteps:
        raise ValueError(f"num_steps ({num_steps}) cannot exceed the {num_train_timesteps} training levels")
    if spacing == "leading":
        ratio = num_train_timesteps // num_steps
        steps = (np.arange(0, num_steps) * ratio).round()[::-1].astype(np.int64) + steps_offset
    elif spacing == "trailing":
        ratio = num_train_timesteps / num_steps
        steps = np.round(np.arange(num_train_timesteps, 0, -ratio)).astype(np.int64) - 1
    elif spacing == "linspace":
        steps = np.linspace(0, num_train_timesteps - 1, num_steps).round()[::-1].astype(np.int64)
    else:
        raise ValueError(f"timestep_spacing must be one of {SPACINGS}, got {spacing!r}")
    return torch.from_numpy(steps.copy())


def previous_timesteps(steps: torch.Tensor, rule: str = "next", num_train_timesteps: int = 1000) -> list[int]:
    """Where each step lands: the next timestep of the list (-1 after the last), as the papers write it.

    rule="diffusers-ddim" reproduces DDIMScheduler, which lands on t - N // n whatever the spacing: with
    trailing or linspace spacing that can differ from the next timestep the loop then visits.
    """
    steps = [int(t) for t in steps]
    if rule == "next":
        return [*steps[1:], -1]
    if rule == "diffusers-ddim":
        return [t - num_train_timesteps // len(steps) for t in steps]
    raise ValueError(f"rule must be 'next' or 'diffusers-ddim', got {rule!r}")


def split_prediction(model_output: torch.Tensor, x_t: torch.Tensor, alpha_bar_t: torch.Tensor,
                     prediction_type: str = "epsilon") -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_hat, eps_hat) from a model output, using x_t = sqrt(a) x0 + sqrt(1 - a) eps.

    `alpha_bar_t` is a number or a tensor broadcastable to x_t (one level per sample).
    """
    a, b = alpha_bar_t ** 0.5, (1 - alpha_bar_t) ** 0.5
    if prediction_type == "epsilon":
        return (x_t - b * model_output) / a, model_output
    if prediction_type == "sample":
        return model_output, (x_t - a * model_output) / b
    if prediction_type == "v_prediction":  # v = a eps - b x0
        return a * x_t - b * model_output, a * model_output + b * x_t
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def ddim_sigma(alpha_bar_t: torch.Tensor, alpha_bar_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """DDIM's noise scale: eta times the DDPM posterior's standard deviation (Song et al. eq. 16)."""
    variance = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)
    return eta * variance ** 0.5


def ddim_step(model_output: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor, schedule: Schedule,
              eta: float = 0.0, noise: torch.Tensor | None = None, prediction_type: str = "epsilon",
              clip_sample: bool = False, clip_sample_range: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step from t to t_prev (-1: the end); returns (x_prev, x0_hat).

    x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma^2) eps_hat + sigma z. With clip_sample, x0_hat
    is clamped but eps_hat is the model's (diffusers' default, use_clipped_model_output=False).
    """
    a_t, a_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    x0, eps = split_prediction(model_output, x_t, a_t, prediction_type)
    if clip_sample:
        x0 = x0.clamp(-clip_sample_range, clip_sample_range)
    sigma = ddim_sigma(a_t, a_prev, eta)
    x_prev = a_prev ** 0.5 * x0 + (1 - a_prev - sigma ** 2) ** 0.5 * eps
    if eta > 0:
        if noise is None:
            raise ValueError("eta > 0 needs `noise` (a tensor shaped like x_t)")
        x_prev = x_prev + sigma * noise
    return x_prev, x0


def ddpm_step(model_output: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor, schedule: Schedule,
              noise: torch.Tensor | None = None, prediction_type: str = "epsilon", clip_sample: bool = True,
              clip_sample_range: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDPM ancestral step t -> t_prev: a draw from q(x_prev | x_t, x0_hat); returns (x_prev, x0_hat).

    With a_t = a_bar_t / a_bar_prev and b_t = 1 - a_t (one step of the skipped-step chain):
    mean = sqrt(a_bar_prev) b_t / (1 - a_bar_t) x0_hat + sqrt(a_t) (1 - a_bar_prev) / (1 - a_bar_t) x_t,
    variance = (1 - a_bar_prev) / (1 - a_bar_t) b_t ("fixed_small"); no noise at t = 0.
    """
    a_bar_t, a_bar_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    alpha_t = a_bar_t / a_bar_prev
    beta_t = 1 - alpha_t
    x0, _ = split_prediction(model_output, x_t, a_bar_t, prediction_type)
    if clip_sample:
        x0 = x0.clamp(-clip_sample_range, clip_sample_range)
    coef_x0 = a_bar_prev ** 0.5 * beta_t / (1 - a_bar_t)
    coef_xt = alpha_t ** 0.5 * (1 - a_bar_prev) / (1 - a_bar_t)
    mean = coef_x0 * x0 + coef_xt * x_t
    if t > 0:
        if noise is None:
            raise ValueError("a DDPM step at t > 0 needs `noise` (a tensor shaped like x_t)")
        variance = ((1 - a_bar_prev) / (1 - a_bar_t) * beta_t).clamp(min=1e-20)
        mean = mean + variance ** 0.5 * noise
    return mean, x0


@dataclass(frozen=True)
class Sampler:
    """A sampler's settings: kind ("ddim" or "ddpm"), steps, eta (DDIM only), and diffusers' options."""

    kind: str = "ddim"
    num_steps: int = 50
    eta: float = 0.0
    timestep_spacing: str = "trailing"
    steps_offset: int = 0
    set_alpha_to_one: bool = True
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    prediction_type: str = "epsilon"
    prev_rule: str = "next"
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not 0 <= self.eta <= 1:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if self.timestep_spacing not in SPACINGS:
            raise ValueError(f"timestep_spacing must be one of {SPACINGS}, got {self.timestep_spacing!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, "
                             f"got {self.prediction_type!r}")

    def plan(self, num_train_timesteps: int = 1000) -> list[tuple[int, int]]:
        """The (t, t_prev) pairs of the loop."""
        steps = timesteps(self.num_steps, num_train_timesteps, self.timestep_spacing, self.steps_offset)
        return list(zip(steps.tolist(), previous_timesteps(steps, self.prev_rule, num_train_timesteps),
                        strict=True))

    @classmethod
    def from_config(cls, config: dict, **settings: object) -> Sampler:
        """The settings a diffusers scheduler config holds (spacing, offset, alpha_to_one, clipping),
        overridden by `settings` (e.g. kind="ddpm", num_steps=4)."""
        stored = dict(timestep_spacing=config.get("timestep_spacing", "leading"),
                      steps_offset=config.get("steps_offset", 0),
                      set_alpha_to_one=config.get("set_alpha_to_one", True),
                      clip_sample=config.get("clip_sample", True),
                      clip_sample_range=config.get("clip_sample_range", 1.0),
                      prediction_type=config.get("prediction_type", "epsilon"))
        return cls(**{**stored, **settings})

    def schedule(self, config: dict) -> Schedule:
        """The schedule of a diffusers scheduler config, with this sampler's set_alpha_to_one.

        DDPM always ends on alpha_bar = 1 (diffusers' DDPMScheduler has no set_alpha_to_one).
        """
        return schedule_from_config(config, self.set_alpha_to_one or self.kind == "ddpm")


@torch.no_grad()
def run_sampler(model: Callable[[torch.Tensor, int], torch.Tensor], x_T: torch.Tensor, sampler: Sampler,
                schedule: Schedule, generator: torch.Generator | None = None,
                callback: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None
                ) -> torch.Tensor:
    """Denoise `x_T` (pure noise, unit variance) with `model(x_t, t) -> output`; returns x at the end.

    The fresh noise of each step is drawn from `generator` after the model call, as diffusers does.
    `callback(i, t, x_prev, x0_hat)` sees every step.
    """
    x = x_T
    for i, (t, t_prev) in enumerate(sampler.plan(schedule.num_train_timesteps)):
        output = model(x, t)
        needs_noise = (sampler.kind == "ddpm" and t > 0) or (sampler.kind == "ddim" and sampler.eta > 0)
        noise = None
        if needs_noise:
            noise = randn_tensor(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        common = dict(prediction_type=sampler.prediction_type, clip_sample=sampler.clip_sample,
                      clip_sample_range=sampler.clip_sample_range)
        if sampler.kind == "ddim":
            x, x0 = ddim_step(output, t, t_prev, x, schedule, sampler.eta, noise, **common)
        else:
            x, x0 = ddpm_step(output, t, t_prev, x, schedule, noise, **common)
        if callback is not None:
            callback(i, t, x, x0)
    return x


@torch.no_grad()
def sample_images(parts: SDParts, prompts: list[str], sampler: Sampler, guidance_scale: float = 7.5,
                  generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                  model: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> torch.Tensor:
    """Text-to-image with the parts' noise schedule and `sampler`: images (B,3,H,W) in [-1,1].

    The model is classifier-free guided noise (`sampling.guided_noise`) unless `model(x_t, t)` is given
    (a distilled student). The starting noise is drawn from `generator` as diffusers' pipelines do.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise ValueError("prompts is empty; give at least one prompt")
    if model is None:
        uncond, cond = prompt_embeddings(parts, prompts)

        def model(x: torch.Tensor, t: int) -> torch.Tensor:
            return guided_noise(parts, x, t, uncond, cond, guidance_scale)
    if latents is None:
        latents = randn_tensor(parts.latent_shape(len(prompts)), generator=generator, device=parts.device,
                               dtype=parts.dtype)
    schedule = sampler.schedule(dict(parts.scheduler.config))
    final = run_sampler(model, latents.to(parts.device, parts.dtype), sampler, schedule, generator)
    return parts.decode_latents(final)


def unet_calls(sampler: Sampler, guided: bool) -> int:
    """UNet evaluations per image: one per step, two with classifier-free guidance (cond + uncond)."""
    return sampler.num_steps * (2 if guided else 1)


def log_snr(schedule: Schedule, t: int) -> float:
    """log(alpha_bar_t / (1 - alpha_bar_t)): the signal-to-noise ratio of level t, in log space."""
    a = float(schedule.alpha_bar(t))
    return math.log(a / (1 - a))
