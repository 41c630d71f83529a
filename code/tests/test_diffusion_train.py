"""The mini SD training command end to end on a toy budget: train, save, load with sha256, sample."""

import pytest
import torch

from fromscratch.diffusion.parts import load_mini, sha256_of
from fromscratch.diffusion.sampling import generate
from fromscratch.diffusion.train import mini_scheduler, mini_unet_config, save_mini, snr_weights, train


def test_train_save_load_generate(tmp_path):
    unet, losses = train(steps=2, batch_size=4, lr=1e-3, n_images=16, data_seed=0, seed=0,
                         caption_dropout=0.5, ema_decay=0.9)
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    path = tmp_path / "mini.safetensors"
    digest = save_mini(unet, mini_scheduler(), path, {"steps": 2})
    assert digest == sha256_of(path)
    parts = load_mini(torch.device("cpu"), path, digest)
    assert parts.vae is None and parts.image_size == 32 and parts.latent_shape(2) == (2, 3, 32, 32)
    assert parts.encode_text(["a red circle", ""]).shape == (2, 16, 384)
    for a, b in zip(parts.unet.parameters(), unet.parameters(), strict=True):
        assert torch.equal(a, b)
    images = generate(parts, ["a red circle", "a blue square"], 3.0, 2,
                      generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    assert torch.equal(parts.encode_images(images), images)  # pixel space: latents are the images


def test_unet_config_places_cross_attention_at_the_coarsest_levels():
    config = mini_unet_config((8, 16, 32), attention_levels=2)
    assert config["down_block_types"] == ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    assert config["up_block_types"] == ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    with pytest.raises(ValueError, match="attention_levels"):
        mini_unet_config(attention_levels=0)


def test_min_snr_weights():
    scheduler = mini_scheduler()
    t = torch.tensor([0, 500, 999])
    alpha_bar = scheduler.alphas_cumprod[t]
    snr = alpha_bar / (1 - alpha_bar)
    expected = torch.minimum(snr, torch.tensor(5.0)) / snr
    torch.testing.assert_close(snr_weights(scheduler, t, 5.0), expected)
    assert snr_weights(scheduler, t, 5.0)[0] < 0.01 and snr_weights(scheduler, t, 5.0)[2] == 1.0
    assert torch.equal(snr_weights(scheduler, t, None), torch.ones(3))


def test_short_runs_train():
    # OneCycleLR divides by zero when 5% of the steps is exactly one step (20 steps).
    settings = dict(batch_size=2, lr=1e-3, n_images=8, data_seed=0, seed=0, caption_dropout=0.5,
                    ema_decay=0.9)
    for steps in (2, 20, 39):
        _, losses = train(steps=steps, **settings)
        assert len(losses) == steps
    with pytest.raises(ValueError, match="steps must be at least 2"):
        train(steps=1, **settings)
