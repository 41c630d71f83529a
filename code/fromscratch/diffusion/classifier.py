"""A small CNN that reads a shapes image's shape and colour: the judge of prompt adherence and of edits.

Trained on one-shape images of the shapes dataset (with a little pixel noise, so generated images are
in its range); the weights ship in data/ with a sha256 like the mini SD's.

    python -m fromscratch.diffusion.classifier   # trains it, writes data/shapes_classifier.safetensors
    model = load_classifier(); shape_idx, colour_idx = predict(model, images)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fromscratch.device import resolve_device
from fromscratch.diffusion.parts import REPO_ROOT, check_sha256, sha256_of
from fromscratch.diffusion.shapes import COLOURS, SHAPES, make_shapes

CLASSIFIER_PATH = REPO_ROOT / "data" / "shapes_classifier.safetensors"
CLASSIFIER_SHA256 = "d8f433c095cf4629df894783ee48b3a63f1106042eab425271269ad8963e7f85"
CLASSIFIER_COMMAND = "python -m fromscratch.diffusion.classifier"
TRAIN_SEED, TEST_SEED = 1, 2  # data seeds: the test images are never trained on


class ShapesClassifier(nn.Module):
    """Three conv blocks, global average pooling, and one linear head per attribute (shape, colour)."""

    def __init__(self, width: int = 32):
        super().__init__()
        layers, channels = [], 3
        for out in (width, 2 * width, 2 * width):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.shape_head = nn.Linear(channels, len(SHAPES))
        self.colour_head = nn.Linear(channels, len(COLOURS))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B,3,H,W) in [-1,1] -> (shape logits, colour logits)."""
        pooled = self.features(images).mean(dim=(2, 3))
        return self.shape_head(pooled), self.colour_head(pooled)


def isolate_region(images: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Keep the pixels inside `regions` (B,H,W bool); paint the rest with each image's median outside colour.

    Use it to ask the classifier about one shape of a two-shape image (or an edited region).
    """
    if regions.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"regions must be (B,H,W) = {(images.shape[0], *images.shape[2:])}, "
                         f"got {tuple(regions.shape)}")
    grown = F.max_pool2d(regions[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0
    out = images.clone()
    for i in range(len(images)):
        outside = images[i][:, ~grown[i]]
        fill = outside.median(dim=1).values if outside.shape[1] else torch.ones(3)
        out[i][:, ~grown[i]] = fill[:, None].to(out)
    return out


@torch.no_grad()
def predict(model: ShapesClassifier, images: torch.Tensor,
            batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(shape index, colour index) arrays for images in [-1,1] (clamped first, like a saved picture)."""
    model.eval()
    device = next(model.parameters()).device
    shapes, colours = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].float().clamp(-1, 1).to(device)
        shape_logits, colour_logits = model(batch)
        shapes.append(shape_logits.argmax(1).cpu())
        colours.append(colour_logits.argmax(1).cpu())
    return torch.cat(shapes).numpy(), torch.cat(colours).numpy()


def accuracy(model: ShapesClassifier, n: int = 2000, seed: int = TEST_SEED) -> dict[str, float]:
    """Shape, colour and both-right accuracy on `n` fresh one-shape test images."""
    data = make_shapes(n, seed=seed, p_two=0)
    shape, colour = predict(model, data.images)
    shape_ok, colour_ok = shape == data.shape[:, 0], colour == data.colour[:, 0]
    return {"shape": float(shape_ok.mean()), "colour": float(colour_ok.mean()),
            "both": float((shape_ok & colour_ok).mean()), "n": n}


def tint_backgrounds(images: torch.Tensor, masks: torch.Tensor, amount: torch.Tensor,
                     colours: torch.Tensor) -> torch.Tensor:
    """Pull each image's background (outside `masks`, (B,H,W) bool) towards `colours` (B,3) by `amount` (B,).

    Guidance at large scales tints the whole picture, background included; a judge trained on pale
    backgrounds only would read a green square on a blue-tinted background as blue.
    """
    background = ~masks[:, None]
    target = colours[:, :, None, None].to(images)
    tinted = images + amount[:, None, None, None].to(images) * (target - images)
    return torch.where(background, tinted, images)


def train_classifier(n: int = 12000, epochs: int = 4, seed: int = TRAIN_SEED, batch_size: int = 128,
                     lr: float = 2e-3, device: str = "auto", max_tint: float = 0.7) -> ShapesClassifier:
    """Train on `n` one-shape images (data seed `seed`).

    Augmentation: Gaussian pixel noise, and half of the images get their background tinted towards a
    random colour, by up to `max_tint` (see `tint_backgrounds`).
    """
    device = resolve_device(device)
    torch.manual_seed(seed)
    data = make_shapes(n, seed=seed, p_two=0)
    images, masks = data.images, data.masks[:, 0]
    targets = torch.from_numpy(data.shape[:, 0]), torch.from_numpy(data.colour[:, 0])
    model = ShapesClassifier().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    steps = epochs * (n // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n)
        for start in range(0, n - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            tint = torch.rand(len(index)) * max_tint * (torch.rand(len(index)) < 0.5)
            batch = tint_backgrounds(images[index], masks[index], tint, torch.rand(len(index), 3) * 2 - 1)
            noise_level = torch.rand(len(index), 1, 1, 1) * 0.15
            batch = (batch + noise_level * torch.randn_like(batch)).to(device)
            shape_logits, colour_logits = model(batch)
            loss = F.cross_entropy(shape_logits, targets[0][index].to(device)) + \
                F.cross_entropy(colour_logits, targets[1][index].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def save_classifier(model: ShapesClassifier, path: str | Path) -> str:
    """Write the weights as safetensors; returns the file's sha256."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
    return sha256_of(path)


def load_classifier(path: str | Path | None = None, device: str | torch.device = "cpu",
                    expected_sha256: str | None = None) -> ShapesClassifier:
    """The shipped classifier (sha256 checked), in eval mode."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else CLASSIFIER_PATH
    check_sha256(path, expected_sha256 or CLASSIFIER_SHA256, CLASSIFIER_COMMAND)
    model = ShapesClassifier()
    model.load_state_dict(load_file(str(path)))
    return model.to(resolve_device(device)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(CLASSIFIER_PATH))
    parser.add_argument("--n", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    model = train_classifier(args.n, args.epochs)
    seconds = time.perf_counter() - start
    digest = save_classifier(model, args.out)
    print(f"trained in {seconds:.0f} s; test accuracy {accuracy(model)}; sha256 {digest}")


if __name__ == "__main__":
    main()
