"""What produced a page: the profile and parameters at the top, the environment card at the end."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fromscratch.device import resolve_device
from fromscratch.plot import readable_figures_on_page

PROFILES = ("cpu", "gpu")
LIBRARIES = ("torch", "numpy", "numba", "diffusers", "transformers", "scikit-learn",
             "faiss-cpu", "papermill")


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where there is one."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """A readable name of the device the post computes on."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"{cpu_model()}, {os.cpu_count()} logical cores"


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of the libraries a post may compare against."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """The commit of the repository the post runs from, or 'unknown'."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class RunInfo:
    """The profile, device and parameters of one execution of a post, and its start time."""

    profile: str
    device: torch.device
    parameters: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, profile: str, device: str = "auto", **parameters: Any) -> RunInfo:
        """Validate the profile, resolve the device and remember the post's parameters."""
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
        readable_figures_on_page()
        return cls(profile, resolve_device(device), {"device": device, **parameters})

    def parameters_markdown(self) -> str:
        """One compact paragraph: the profile, device and parameters that produced this page."""
        values = ", ".join(f"`{name} = {value!r}`" for name, value in self.parameters.items())
        return (f"Produced by the **{self.profile}** profile on **{device_name(self.device)}**, "
                f"with {values}.\n")

    def _repr_markdown_(self) -> str:
        return self.parameters_markdown()

    def environment(self) -> dict[str, str]:
        """Device, library versions, profile, commit and wall time so far."""
        return {
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "profile": self.profile,
            "device": device_name(self.device),
            "python": platform.python_version(),
            **library_versions(),
            "commit": git_commit(),
            "wall time": f"{time.perf_counter() - self.started:.1f} s",
        }

    def card(self) -> None:
        """Print the environment card that ends every post."""
        card = self.environment()
        width = max(map(len, card))
        print("\n".join(f"{key:<{width}}  {value}" for key, value in card.items()))
