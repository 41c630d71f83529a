"""Distil the mini SD into few-step samplers: guidance first (Meng et al.), then halving (Salimans & Ho).

    python -m fromscratch.diffusion.distill          # writes data/mini_sd_distilled_*.safetensors
    parts, unet = load_student("4"); images = sample_student(parts, unet, prompts, 4, scale=5.0)

Stage 1 (guidance): a student that takes the guidance scale s as an input learns the teacher's guided
noise eps_u + s (eps_c - eps_u) in one UNet call. The mini UNet has no input for s, so s enters like a
second timestep: diffusers' `class_embed_type="timestep"` adds a sinusoidal embedding of 100 s, passed
through a new two-layer MLP, to the timestep embedding. Its last layer starts at zero, so the student
starts as the teacher's conditional prediction.

Stage 2 (progressive rounds): a student initialised from its teacher learns to do in one DDIM step
what the teacher does in two. From z_t (a training image noised to level t), two teacher DDIM steps
t -> t' -> t'' give z_t''; the clean image x~ for which ONE DDIM step t -> t'' lands exactly on z_t'' is

    x~ = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t)

and the loss is the truncated-SNR weighted x error max(SNR_t, 1) |x_hat - x~|^2 (Salimans & Ho, sec. 4).
Where the mini SD forces a change: it predicts eps, and the paper's students predict x or v. The
students keep the eps output (so initialising from the teacher keeps the teacher's function), read
x_hat = (z_t - sigma_t eps_hat) / alpha_t from it, and take the loss on x_hat as the paper does; in eps
terms the weight is max(1, 1/SNR_t). The mini SD's schedule keeps alpha_999 = 0.068 > 0: x_hat stays finite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from tqdm.auto import tqdm

from fromscratch.diffusion.parts import REPO_ROOT, SDParts, conv_layout, load_mini
from fromscratch.diffusion.samplers import Sampler, Schedule, run_sampler, schedule_from_config, timesteps
from fromscratch.diffusion.sampling import guided_noise, prompt_embeddings

DATA = REPO_ROOT / "data"
COMMAND = "python -m fromscratch.diffusion.distill"
LABEL_SCALE = 100.0  # s enters the sinusoidal embedding as 100 s, so s = 1 and s = 2 are far apart
STAGES = ("guided", "8", "4", "2", "1")  # the guided student samples at TEACHER_STEPS steps
TEACHER_STEPS = 16
# sha256 of each shipped student (data/README.md has the command and arguments that wrote them)
STUDENT_SHA256 = {
    "guided": "fcaf3fb303d9f6a82431793e9c1c017eabbaceb030ac15f59bdab2f2e2c5495b",
    "8": "bd8380e4ce32c8f03dff1c4f7196bbadf71eaef50125c76d98e695cc55a6313e",
    "4": "c59e50d75273a9914ae478887966067fe0510338dc70902f38293ffe9c56dfe0",
    "2": "9ee46a8cb997fcf154dbb89b5ccd73d02aa106942af9e3929d478dbad28e9026",
    "1": "500442c41ac74c97b26e82674cca0dfc65901e734c4aa356e76187112cb39dfd",
}


def student_path(stage: str, folder: Path = DATA) -> Path:
    """data/mini_sd_distilled_<stage>.safetensors."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    return Path(folder) / f"mini_sd_distilled_{stage}.safetensors"


def steps_of(stage: str) -> int:
    """DDIM steps the student of `stage` samples with."""
    return TEACHER_STEPS if stage == "guided" else int(stage)


def guided_student(teacher: UNet2DConditionModel) -> UNet2DConditionModel:
    """A copy of the teacher plus a guidance-scale embedding added to its time embedding (zero at start)."""
    config = {key: value for key, value in teacher.config.items() if not key.startswith("_")}
    config["class_embed_type"] = "timestep"
    student = UNet2DConditionModel.from_config(config).to(teacher.device)
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or not all(key.startswith("class_embedding.") for key in missing):
        raise ValueError(f"teacher and student differ beyond the guidance embedding: {missing}, {unexpected}")
    torch.nn.init.zeros_(student.class_embedding.linear_2.weight)
    torch.nn.init.zeros_(student.class_embedding.linear_2.bias)
    return student


def student_noise(unet: UNet2DConditionModel, x: torch.Tensor, t: torch.Tensor | int, cond: torch.Tensor,
                  scale: float | torch.Tensor) -> torch.Tensor:
    """The student's noise prediction for prompt embeddings `cond` at guidance scale(s) `scale` (one call)."""
    scale = torch.as_tensor(scale, dtype=torch.float32, device=x.device).expand(len(x))
    t = torch.as_tensor(t, device=x.device).expand(len(x))
    return unet(x, t, encoder_hidden_states=cond, class_labels=LABEL_SCALE * scale, return_dict=False)[0]


def alpha_sigma(schedule: Schedule, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) = (sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)), (B,1,1,1); t = -1 is the end."""
    bars = schedule.alphas_cumprod.to(t.device)[t.clamp(min=0)]
    bars = torch.where(t >= 0, bars, torch.full_like(bars, schedule.final_alpha_cumprod))
    bars = bars.reshape(-1, 1, 1, 1)
    return bars ** 0.5, (1 - bars) ** 0.5


def ddim_jump(eps: torch.Tensor, z: torch.Tensor, t: torch.Tensor, s: torch.Tensor, schedule: Schedule
              ) -> torch.Tensor:
    """A deterministic DDIM step (eta = 0) from level t to level s, per sample: alpha_s x_hat + sigma_s eps"""
    alpha_t, sigma_t = alpha_sigma(schedule, t)
    alpha_s, sigma_s = alpha_sigma(schedule, s)
    return alpha_s * (z - sigma_t * eps) / alpha_t + sigma_s * eps


def two_step_target(teacher: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z: torch.Tensor,
                    t: torch.Tensor, t_mid: torch.Tensor, t_next: torch.Tensor, schedule: Schedule
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x~, z_next): the clean image for which one DDIM step t -> t_next lands where two teacher steps do."""
    with torch.no_grad():
        z_mid = ddim_jump(teacher(z, t), z, t, t_mid, schedule)
        z_next = ddim_jump(teacher(z_mid, t_mid), z_mid, t_mid, t_next, schedule)
    alpha_t, sigma_t = alpha_sigma(schedule, t)
    alpha_n, sigma_n = alpha_sigma(schedule, t_next)
    ratio = sigma_n / sigma_t
    return (z_next - ratio * z) / (alpha_n - ratio * alpha_t), z_next


def truncated_snr_loss(eps_hat: torch.Tensor, x_target: torch.Tensor, z: torch.Tensor, t: torch.Tensor,
                       schedule: Schedule) -> torch.Tensor:
    """mean over the batch of max(SNR_t, 1) * mean((x_hat - x~)^2), x_hat read from the eps prediction."""
    alpha, sigma = alpha_sigma(schedule, t)
    x_hat = (z - sigma * eps_hat) / alpha
    weight = torch.clamp(alpha ** 2 / sigma ** 2, min=1.0).flatten()
    return (weight * (x_hat - x_target).pow(2).mean(dim=(1, 2, 3))).mean()


def round_levels(student_steps: int, num_train_timesteps: int = 1000
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, t_mid, t_next) of each student step: the student's trailing timesteps, the teacher's in between."""
    student = timesteps(student_steps, num_train_timesteps, "trailing")
    teacher = timesteps(2 * student_steps, num_train_timesteps, "trailing")
    if not torch.equal(teacher[::2], student):
        raise ValueError(f"{2 * student_steps} teacher steps do not contain the {student_steps} student ones")
    return student, teacher[1::2], torch.cat([student[1:], torch.tensor([-1])])


@dataclasses.dataclass
class Batches:
    """Training images (B,3,H,W), the caption embeddings table (row 0: ""), and each image's row."""

    images: torch.Tensor
    table: torch.Tensor
    rows: torch.Tensor

    def draw(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(0, len(self.images), (size,), generator=generator)
        return self.images[index], self.table[self.rows[index]]


def train_stage(student: UNet2DConditionModel, loss_of: Callable[[torch.Tensor, torch.Tensor, torch.Tensor,
                torch.Tensor], torch.Tensor], data: Batches, steps: int, batch_size: int, lr: float,
                scale_range: tuple[float, float], seed: int, name: str) -> list[float]:
    """Adam with the learning rate falling linearly to 0; each batch: images, prompts, scales, noise."""
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    losses = []
    student.train()
    for step in tqdm(range(steps), desc=name, mininterval=10):
        x0, cond = data.draw(batch_size, generator)
        low, high = scale_range
        scale = low + (high - low) * torch.rand(batch_size, generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        loss = loss_of(x0, cond, scale, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 100 == 0:
            print(f"{name} step {step}: loss {sum(losses[-100:]) / len(losses[-100:]):.5f}", flush=True)
    return losses


def guidance_loss(teacher: SDParts, student: UNet2DConditionModel, schedule: Schedule, uncond: torch.Tensor
                  ) -> Callable:
    """Stage 1's loss: the student's eps at scale s against the teacher's guided eps, at a random level t."""
    def loss_of(x0, cond, scale, noise):
        t = torch.randint(0, schedule.num_train_timesteps, (len(x0),))
        alpha, sigma = alpha_sigma(schedule, t)
        z = alpha * x0 + sigma * noise
        with torch.no_grad():  # guided_noise runs the UNet on [z; z]: each half needs its own levels
            empty = uncond.expand(len(x0), -1, -1)
            target_eps = guided_noise(teacher, z, torch.cat([t, t]), empty, cond, scale)
        x_target = (z - sigma * target_eps) / alpha
        return truncated_snr_loss(student_noise(student, z, t, cond, scale), x_target, z, t, schedule)
    return loss_of


def halving_loss(teacher: UNet2DConditionModel, student: UNet2DConditionModel, schedule: Schedule,
                 student_steps: int) -> Callable:
    """A round's loss: one student step against two teacher steps, at a random step of the student's loop."""
    levels = round_levels(student_steps, schedule.num_train_timesteps)

    def loss_of(x0, cond, scale, noise):
        i = torch.randint(0, student_steps, (len(x0),))
        t, t_mid, t_next = (level[i] for level in levels)
        alpha, sigma = alpha_sigma(schedule, t)
        z = alpha * x0 + sigma * noise
        x_target, _ = two_step_target(lambda x, tt: student_noise(teacher, x, tt, cond, scale), z, t, t_mid,
                                      t_next, schedule)
        return truncated_snr_loss(student_noise(student, z, t, cond, scale), x_target, z, t, schedule)
    return loss_of


def save_student(unet: UNet2DConditionModel, parts: SDParts, path: Path, args: dict) -> str:
    """The student's weights and configs in the mini SD's format; returns the sha256."""
    from fromscratch.diffusion.train import save_mini

    return save_mini(unet, parts.scheduler, path, args)


def load_student(stage: str, device: str | torch.device = "cpu", folder: Path = DATA,
                 expected_sha256: str | None = None) -> tuple[SDParts, UNet2DConditionModel]:
    """The mini SD's parts with the student UNet of `stage` ("guided", "8", "4", "2", "1"), sha256-checked."""
    path = student_path(stage, folder)
    expected = expected_sha256 if expected_sha256 is not None else STUDENT_SHA256[stage]
    if not expected:
        raise ValueError(f"no sha256 is pinned for the {stage!r} student; run `{COMMAND}` and pin it")
    parts = load_mini(torch.device(device), path, expected_sha256=expected)
    if parts.unet.config.class_embed_type != "timestep":
        raise ValueError(f"{path} is not a guidance-conditioned student (no guidance embedding)")
    return parts, parts.unet


@torch.no_grad()
def sample_student(parts: SDParts, unet: UNet2DConditionModel, prompts: list[str], num_steps: int,
                   scale: float, generator: torch.Generator | None = None,
                   latents: torch.Tensor | None = None) -> torch.Tensor:
    """Images (B,3,H,W) in [-1,1] from a student: DDIM (eta = 0, trailing timesteps), one UNet call a step."""
    _, cond = prompt_embeddings(parts, prompts)
    if latents is None:
        latents = torch.randn(parts.latent_shape(len(prompts)), generator=generator).to(parts.device)
    sampler = Sampler.from_config(dict(parts.scheduler.config), num_steps=num_steps, eta=0.0,
                                  timestep_spacing="trailing")
    schedule = schedule_from_config(dict(parts.scheduler.config))
    final = run_sampler(lambda x, t: student_noise(unet, x, t, cond, scale), latents, sampler, schedule)
    return parts.decode_latents(final)


def training_data(n_images: int, data_seed: int) -> Batches:
    """The mini SD's training images (the shapes data) with their caption embeddings."""
    from fromscratch.diffusion.shapes import make_shapes
    from fromscratch.diffusion.train import caption_table

    data = make_shapes(n_images, seed=data_seed)
    table, rows = caption_table(data.captions, torch.device("cpu"))
    return Batches(data.images, table, rows)


def distill(args: argparse.Namespace) -> dict:
    """Stage 1 then the rounds; writes each student as soon as it is trained. Returns the loss log."""
    teacher = load_mini(torch.device("cpu"))
    teacher.unet.requires_grad_(False)
    schedule = schedule_from_config(dict(teacher.scheduler.config))
    data = training_data(args.n_images, args.data_seed)
    uncond = data.table[:1]
    settings = {k: v for k, v in vars(args).items() if k != "out_dir"}
    log: dict = {"args": settings, "stages": {}}
    out = Path(args.out_dir)
    stages = [("guided", args.guidance_steps), *zip(STAGES[1:], args.round_steps, strict=False)]
    previous = None
    for k, (stage, steps) in enumerate(stages):
        start = time.perf_counter()
        if stage == "guided":
            student = guided_student(teacher.unet)
            loss_of = guidance_loss(teacher, student, schedule, uncond)
        else:
            student = UNet2DConditionModel.from_config(previous.config)
            student.load_state_dict(previous.state_dict())
            loss_of = halving_loss(previous.requires_grad_(False).eval(), student, schedule, int(stage))
        student = conv_layout(student, teacher.device)  # about 10% faster training steps on a CPU
        losses = train_stage(student, loss_of, data, steps, args.batch_size, args.lr,
                             (args.scale_min, args.scale_max), args.seed + k, stage)
        seconds = time.perf_counter() - start
        student.eval().requires_grad_(False)
        digest = save_student(student, teacher, student_path(stage, out),
                              {**settings, "stage": stage, "stage_steps": steps,
                               "wall_seconds": round(seconds)})
        log["stages"][stage] = {"steps": steps, "wall_seconds": round(seconds, 1), "sha256": digest,
                                "losses": [round(v, 6) for v in losses]}
        (out / "mini_sd_distilled.losses.json").write_text(json.dumps(log))
        print(f"stage {stage}: {steps} steps in {seconds / 60:.1f} min, final loss (mean of last 50) "
              f"{sum(losses[-50:]) / len(losses[-50:]):.5f}, sha256 {digest}", flush=True)
        previous = student
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description="Distil the mini SD: guidance, then halve the DDIM steps.")
    parser.add_argument("--guidance-steps", type=int, default=600, help="training steps of stage 1")
    parser.add_argument("--round-steps", type=int, nargs="+", default=[400, 400, 400, 400],
                        help="training steps of the rounds 16->8, 8->4, 4->2, 2->1 (fewer: fewer rounds)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--scale-min", type=float, default=1.0, help="guidance scales s are drawn uniformly")
    parser.add_argument("--scale-max", type=float, default=10.0)
    parser.add_argument("--n-images", type=int, default=20000)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default=str(DATA))
    args = parser.parse_args()
    if len(args.round_steps) > len(STAGES) - 1:
        parser.error(f"at most {len(STAGES) - 1} rounds (16->8->4->2->1)")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    distill(args)
    print(f"distilled in {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
