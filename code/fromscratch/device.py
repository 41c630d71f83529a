"""The compute device: picked once, the same way in every post ("auto": CUDA if any); its threads; batches."""

from __future__ import annotations

from typing import Any

import torch

VALID_DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a torch.device that exists on this machine."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but no CUDA GPU is visible; "
                             "use device='auto' or 'cpu'")
        return torch.device(name)
    raise ValueError(f"unknown device {device!r}; use one of {', '.join(VALID_DEVICES)} "
                     "(or 'cuda:N')")


def synchronize(device: str | torch.device) -> None:
    """Wait for queued GPU work, so a timer measures the work and not its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def to_device(obj: Any, device: str | torch.device) -> Any:
    """Tensors (alone or in tuples, lists, dicts) moved to `device`; anything else as it is."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def set_cpu_threads(threads: int) -> int:
    """Pin torch's CPU thread pool to `threads` (0 keeps torch's default, one per core); the count in use."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads should be 0 (torch's default, one per core) or a positive count, "
                         f"got {threads!r}")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
