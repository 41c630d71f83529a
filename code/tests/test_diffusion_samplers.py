"""fromscratch.diffusion.samplers against diffusers' DDPMScheduler and DDIMScheduler on the same outputs."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from hypothesis import given
from hypothesis import strategies as st

from fromscratch.diffusion.samplers import (
    Sampler,
    ddim_step,
    ddpm_step,
    make_schedule,
    previous_timesteps,
    run_sampler,
    sample_images,
    schedule_from_config,
    timesteps,
)

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
DEFAULTS = dict(beta_start=0.0001, beta_end=0.02, beta_schedule="linear")

settings_strategy = st.fixed_dictionaries(dict(
    num_steps=st.integers(1, 60),
    schedule=st.sampled_from([SD, DEFAULTS]),
    timestep_spacing=st.sampled_from(["leading", "trailing", "linspace"]),
    steps_offset=st.sampled_from([0, 1]),
    set_alpha_to_one=st.booleans(),
    clip_sample=st.booleans(),
    prediction_type=st.sampled_from(["epsilon", "sample", "v_prediction"]),
    eta=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 2 ** 16),
))


def model_outputs(seed: int, n: int, shape=(2, 3, 4, 4)) -> list[torch.Tensor]:
    """n fake model outputs, large enough that clip_sample clamps some x0 predictions."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * 1.5 for _ in range(n)]


def diffusers_scheduler(cls, s: dict):
    return cls(num_train_timesteps=1000, **s["schedule"], timestep_spacing=s["timestep_spacing"],
               steps_offset=s["steps_offset"], clip_sample=s["clip_sample"],
               prediction_type=s["prediction_type"],
               **({"set_alpha_to_one": s["set_alpha_to_one"]} if cls is DDIMScheduler else {}))


@given(settings_strategy)
def test_timesteps_equal_diffusers(s) -> None:
    for cls in (DDIMScheduler, DDPMScheduler):
        reference = diffusers_scheduler(cls, s)
        reference.set_timesteps(s["num_steps"])
        ours = timesteps(s["num_steps"], 1000, s["timestep_spacing"], s["steps_offset"])
        assert ours.tolist() == reference.timesteps.tolist()


def test_schedule_equals_diffusers() -> None:
    for schedule in (SD, DEFAULTS):
        for one in (True, False):
            reference = DDIMScheduler(num_train_timesteps=1000, **schedule, set_alpha_to_one=one)
            ours = make_schedule(1000, **schedule, set_alpha_to_one=one)
            torch.testing.assert_close(ours.alphas_cumprod, reference.alphas_cumprod, rtol=0, atol=0)
            assert ours.final_alpha_cumprod == pytest.approx(float(reference.final_alpha_cumprod), abs=0)


@given(settings_strategy)
def test_ddim_steps_equal_diffusers(s) -> None:
    """A whole DDIM trajectory driven by the same model outputs and the same noise, step by step."""
    reference = diffusers_scheduler(DDIMScheduler, s)
    reference.set_timesteps(s["num_steps"])
    schedule = schedule_from_config(dict(reference.config))
    steps = reference.timesteps
    outputs = model_outputs(s["seed"], len(steps))
    noises = model_outputs(s["seed"] + 1, len(steps))
    theirs = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(s["seed"] + 2))
    for t, t_prev, output, noise in zip(steps.tolist(), previous_timesteps(steps, "diffusers-ddim"), outputs,
                                        noises, strict=True):
        theirs_next, theirs_x0 = reference.step(output, t, theirs, eta=s["eta"], variance_noise=noise,
                                                return_dict=False)
        ours_next, ours_x0 = ddim_step(output, t, t_prev, theirs, schedule, s["eta"], noise,
                                       s["prediction_type"], s["clip_sample"])
        torch.testing.assert_close(ours_x0, theirs_x0, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ours_next, theirs_next, rtol=1e-6, atol=1e-6)
        theirs = theirs_next


@given(settings_strategy)
def test_ddpm_steps_equal_diffusers(s) -> None:
    """DDPM: same outputs; the noise diffusers draws from a generator is drawn here from an equal one."""
    reference = diffusers_scheduler(DDPMScheduler, s)
    reference.set_timesteps(s["num_steps"])
    schedule = schedule_from_config(dict(reference.config), set_alpha_to_one=True)
    steps = reference.timesteps
    outputs = model_outputs(s["seed"], len(steps))
    theirs_gen, ours_gen = (torch.Generator().manual_seed(s["seed"] + 3) for _ in range(2))
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(s["seed"] + 2))
    for t, t_prev, output in zip(steps.tolist(), previous_timesteps(steps, "next"), outputs, strict=True):
        theirs_next, theirs_x0 = reference.step(output, t, x, generator=theirs_gen, return_dict=False)
        noise = torch.randn(x.shape, generator=ours_gen) if t > 0 else None
        ours_next, ours_x0 = ddpm_step(output, t, t_prev, x, schedule, noise, s["prediction_type"],
                                       s["clip_sample"])
        torch.testing.assert_close(ours_x0, theirs_x0, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ours_next, theirs_next, rtol=1e-6, atol=1e-6)
        x = theirs_next


class LinearModel:
    """A fake denoiser: a fixed linear map of x_t plus a t-dependent shift, so trajectories depend on both."""

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(3, 3, generator=g) * 0.3

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        return torch.einsum("ij,bjhw->bihw", self.weight, x) + float(t) / 1000


@pytest.mark.parametrize("kind", ["ddim", "ddpm"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_whole_loop_equals_diffusers_loop(kind, spacing) -> None:
    """run_sampler with diffusers' timestep rule = diffusers' set_timesteps + step loop, same generator."""
    cls = DDIMScheduler if kind == "ddim" else DDPMScheduler
    extra = {"set_alpha_to_one": False} if kind == "ddim" else {}
    reference = cls(num_train_timesteps=1000, **SD, timestep_spacing=spacing, steps_offset=1,
                    clip_sample=False, **extra)
    reference.set_timesteps(7)
    model = LinearModel()
    x_T = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(9)
    theirs = x_T.clone()
    for t in reference.timesteps:
        kwargs = {"eta": 0.5} if kind == "ddim" else {}
        theirs = reference.step(model(theirs, t), t, theirs, generator=g, return_dict=False, **kwargs)[0]
    sampler = Sampler.from_config(dict(reference.config), kind=kind, num_steps=7,
                                  eta=0.5 if kind == "ddim" else 0,
                                  prev_rule="diffusers-ddim" if kind == "ddim" else "next")
    ours = run_sampler(model, x_T, sampler, sampler.schedule(dict(reference.config)),
                       torch.Generator().manual_seed(9))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_diffusers_ddim_rule_differs_from_next_timestep() -> None:
    """The documented quirk: DDIMScheduler lands on t - N // n, not on the next timestep it visits."""
    steps = timesteps(3, 1000, "trailing")
    assert steps.tolist() == [999, 666, 332]
    assert previous_timesteps(steps, "next") == [666, 332, -1]
    assert previous_timesteps(steps, "diffusers-ddim") == [666, 333, -1]


def test_sample_images_equals_generate_on_tiny_sd(tmp_path) -> None:
    """With the pipeline's own settings, sample_images reproduces sampling.generate (diffusers' loop)."""
    from fromscratch.diffusion.parts import load_parts
    from fromscratch.diffusion.sampling import generate
    from fromscratch.diffusion.testing import make_tiny_sd

    parts = load_parts(str(make_tiny_sd(tmp_path / "tiny")), device="cpu")
    sampler = Sampler.from_config(dict(parts.scheduler.config), num_steps=5, eta=1.0,
                                  prev_rule="diffusers-ddim")
    ours = sample_images(parts, ["a red circle", "x"], sampler, 7.5, torch.Generator().manual_seed(0))
    theirs = generate(parts, ["a red circle", "x"], 7.5, 5, eta=1.0,
                      generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (dict(kind="euler"), "kind must be"), (dict(eta=1.5), "eta must be"),
    (dict(timestep_spacing="uniform"), "timestep_spacing must be"),
    (dict(prediction_type="x"), "prediction_type"),
])
def test_bad_settings_fail_in_one_line(bad, message) -> None:
    with pytest.raises(ValueError, match=message):
        Sampler(**bad)


def test_bad_step_counts_and_missing_noise() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        timesteps(0)
    with pytest.raises(ValueError, match="cannot exceed"):
        timesteps(1001)
    schedule = make_schedule(**SD)
    x = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ValueError, match="needs `noise`"):
        ddim_step(x, 999, 500, x, schedule, eta=1.0)
    with pytest.raises(ValueError, match="needs `noise`"):
        ddpm_step(x, 999, 500, x, schedule)
