"""A tiny random Stable Diffusion saved in diffusers' layout: tests run SD code offline, in seconds.

    folder = make_tiny_sd(tmp_path / "tiny-sd")
    parts = load_parts(str(folder), device="cpu")
    pipe = StableDiffusionPipeline.from_pretrained(folder)   # same weights, for equality checks
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_IMAGE_SIZE = 32  # pixels; latents are 16x16x4 (the tiny VAE downsamples by 2)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters (the BPE alphabet)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def write_tiny_clip_vocab(folder: Path) -> tuple[Path, Path]:
    """A CLIP BPE vocabulary with no merges: every byte alone and as a word end, plus the two specials."""
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [char + "</w>" for char in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    merges_file.write_text("#version: 0.2\n")
    return vocab_file, merges_file


def tiny_components(seed: int = 0) -> dict:
    """The five pipeline components, small enough to run a 32x32 image in milliseconds on a CPU."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from fromscratch.diffusion.parts import SD_SCHEDULER

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=TINY_IMAGE_SIZE // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=4,
        norm_num_groups=4)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4, sample_size=TINY_IMAGE_SIZE)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=600,
        max_position_embeddings=77, projection_dim=32))
    return dict(unet=unet.eval(), vae=vae.eval(), text_encoder=text_encoder.eval(),
                scheduler=DDIMScheduler(num_train_timesteps=1000, **SD_SCHEDULER),
                tokenizer_class=CLIPTokenizer)


def make_tiny_sd(folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny random SD and save it in diffusers pipeline layout under `folder`; returns the folder.

    Loadable offline by `load_parts(str(folder))` and `StableDiffusionPipeline.from_pretrained(folder)`.
    Calling it again on a folder it already filled does nothing.
    """
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return folder
    parts = tiny_components(seed)
    vocab_file, merges_file = write_tiny_clip_vocab(folder / "_vocab")
    tokenizer = parts.pop("tokenizer_class")(str(vocab_file), str(merges_file), model_max_length=77)
    pipe = StableDiffusionPipeline(**parts, tokenizer=tokenizer, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder
