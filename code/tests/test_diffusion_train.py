"""The mini SD training command end to end on a toy budget: train, save, load with sha256, sample."""

import torch

from fromscratch.diffusion.parts import load_mini, sha256_of
from fromscratch.diffusion.sampling import generate
from fromscratch.diffusion.train import mini_scheduler, save_mini, train


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
