"""fromscratch.diffusion.distill: the two-step target, the guidance student, the loss, the weight files."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from diffusers import UNet2DConditionModel
from hypothesis import given, settings
from hypothesis import strategies as st

from fromscratch.diffusion import distill
from fromscratch.diffusion.parts import MINI_SD_PATH, check_sha256, read_mini_weights
from fromscratch.diffusion.samplers import ddim_step, schedule_from_config
from fromscratch.diffusion.train import mini_scheduler, mini_unet_config

SCHEDULE = schedule_from_config(dict(mini_scheduler().config))


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    config = {**mini_unet_config((8, 16), 1), "sample_size": 8}
    return UNet2DConditionModel(**config).eval()


def tiny_student(seed: int = 0) -> UNet2DConditionModel:
    """A guidance student of a tiny random teacher, its guidance embedding randomised (not the zero start)."""
    student = distill.guided_student(tiny_unet(seed))
    torch.nn.init.normal_(student.class_embedding.linear_2.weight, std=0.5)
    return student.eval()


TINY_STUDENT = tiny_student()


def test_guided_student_starts_as_the_teachers_conditional_prediction() -> None:
    teacher = tiny_unet()
    student = distill.guided_student(teacher).eval()
    x, cond = torch.randn(3, 3, 8, 8), torch.randn(3, 16, 384)
    t = torch.tensor([999, 500, 3])
    with torch.no_grad():
        expected = teacher(x, t, encoder_hidden_states=cond).sample
        for scale in (1.0, 7.5):
            torch.testing.assert_close(distill.student_noise(student, x, t, cond, scale), expected)


@settings(max_examples=12)
@given(st.sampled_from([1, 2, 4, 8]), st.integers(0, 7), st.integers(0, 1000))
def test_one_step_on_the_target_lands_where_two_teacher_steps_do(student_steps, step, seed) -> None:
    """By construction: DDIM from t with the eps implied by x~ reaches the teacher's z after two steps."""
    step = step % student_steps
    model = TINY_STUDENT
    g = torch.Generator().manual_seed(seed)
    z, cond = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 16, 384, generator=g)
    scale = torch.tensor([1.0, 6.0])
    t_all, mid_all, next_all = distill.round_levels(student_steps)
    t, t_mid, t_next = (int(level[step]) for level in (t_all, mid_all, next_all))

    def teacher(x, tt):
        return distill.student_noise(model, x, tt, cond, scale)

    with torch.no_grad():
        x_target, z_next = distill.two_step_target(teacher, z, torch.full((2,), t), torch.full((2,), t_mid),
                                                   torch.full((2,), t_next), SCHEDULE)
        # the same two teacher steps through samplers.ddim_step (the sampler the post uses)
        z_mid, _ = ddim_step(teacher(z, t), t, t_mid, z, SCHEDULE)
        z_two, _ = ddim_step(teacher(z_mid, t_mid), t_mid, t_next, z_mid, SCHEDULE)
    torch.testing.assert_close(z_next, z_two, rtol=1e-5, atol=1e-5)
    alpha, sigma = SCHEDULE.alpha_bar(t) ** 0.5, (1 - SCHEDULE.alpha_bar(t)) ** 0.5
    eps_target = (z - alpha * x_target) / sigma
    z_one, x0_one = ddim_step(eps_target, t, t_next, z, SCHEDULE)
    torch.testing.assert_close(x0_one, x_target, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(z_one, z_two, rtol=1e-4, atol=1e-4)


def test_round_levels_interleave_teacher_and_student_steps() -> None:
    t, t_mid, t_next = distill.round_levels(8)
    assert t.tolist() == [999, 874, 749, 624, 499, 374, 249, 124]
    assert t_mid.tolist() == [937, 811, 687, 561, 437, 311, 187, 61]  # 812.5 rounds to even
    assert t_next.tolist() == [874, 749, 624, 499, 374, 249, 124, -1]
    t, t_mid, t_next = distill.round_levels(1)
    assert (t.tolist(), t_mid.tolist(), t_next.tolist()) == ([999], [499], [-1])


def test_truncated_snr_loss_is_max_one_over_snr_times_the_noise_error() -> None:
    """In eps terms the weight max(SNR, 1) on the x error is max(1, 1/SNR)."""
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([999, 600, 200, 10])
    eps_hat, eps_target, z = (torch.randn(4, 3, 8, 8, generator=g) for _ in range(3))
    alpha, sigma = distill.alpha_sigma(SCHEDULE, t)
    x_target = (z - sigma * eps_target) / alpha
    loss = distill.truncated_snr_loss(eps_hat, x_target, z, t, SCHEDULE)
    snr = (alpha ** 2 / sigma ** 2).flatten()
    expected = (torch.clamp(1 / snr, min=1) * (eps_hat - eps_target).pow(2).mean(dim=(1, 2, 3))).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=0)
    assert (1 / snr[0]) > 100 and (1 / snr[-1]) < 1  # both branches of the max are exercised


def test_distillation_command_writes_loadable_students(tmp_path) -> None:
    """A few steps of every stage, end to end on the real mini SD; the files load with their sha256."""
    args = argparse.Namespace(guidance_steps=2, round_steps=[2, 2], batch_size=4, lr=1e-4, scale_min=1.0,
                              scale_max=10.0, n_images=64, data_seed=0, seed=0, threads=1,
                              out_dir=str(tmp_path))
    log = distill.distill(args)
    assert list(log["stages"]) == ["guided", "8", "4"]
    saved = json.loads((tmp_path / "mini_sd_distilled.losses.json").read_text())
    assert [len(saved["stages"][s]["losses"]) for s in ("guided", "8", "4")] == [2, 2, 2]
    parts, unet = distill.load_student("4", folder=tmp_path, expected_sha256=log["stages"]["4"]["sha256"])
    images = distill.sample_student(parts, unet, ["a red circle"], 4, 5.0, torch.Generator().manual_seed(0))
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()
    _, meta = read_mini_weights(distill.student_path("4", tmp_path))
    assert meta["train_args"]["stage"] == "4"


def test_weight_files_fail_loudly_on_a_wrong_sha256(tmp_path) -> None:
    path = distill.student_path("2", tmp_path)
    path.write_bytes(MINI_SD_PATH.read_bytes())
    with pytest.raises(ValueError, match=r"sha256 .* expected"):
        distill.load_student("2", folder=tmp_path, expected_sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match="missing"):
        distill.load_student("1", folder=tmp_path, expected_sha256="0" * 64)
    with pytest.raises(ValueError, match="not a guidance-conditioned student"):  # right sha, wrong file
        distill.load_student("2", folder=tmp_path, expected_sha256=check_sha256_of(path))
    with pytest.raises(ValueError, match="stage must be one of"):
        distill.student_path("3")


def check_sha256_of(path) -> str:
    from fromscratch.diffusion.parts import sha256_of

    return sha256_of(path)


@pytest.mark.parametrize("stage", [s for s in distill.STAGES if distill.STUDENT_SHA256[s]])
def test_shipped_students_match_their_pinned_sha256(stage) -> None:
    check_sha256(distill.student_path(stage), distill.STUDENT_SHA256[stage], distill.COMMAND)
