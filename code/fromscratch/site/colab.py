"""Colab set-up: install only what Colab lacks, at this repository's pins, with no restart.

Each post's first cell (in Colab only) clones the repository, puts its `code/` folder on
`sys.path`, and calls `install_missing`. Packages Colab has already loaded (torch, numpy, ...)
are kept as they are: pip is held to their installed versions, so the kernel never needs a
restart, and the package is importable at once (no editable install, whose `.pth` file a
running interpreter would never read).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# What the repository's own tooling needs (tests, linting, building the site), not a post.
NOT_FOR_POSTS = frozenset({
    "pytest", "hypothesis", "ruff", "zizmor", "check-jsonschema", "pypandoc-binary",
    "papermill", "nbformat", "nbclient", "ipykernel", "jupyter-client",
})
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def pinned_requirements(requirements: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements file."""
    pins = {}
    for line in requirements.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[match[1].lower()] = match[2]
    return pins


def installed_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_requirements(pins: dict[str, str], installed=installed_version) -> list[str]:
    """`name==version` for each pinned package a post needs that is not installed at all."""
    return [f"{name}=={version}" for name, version in pins.items()
            if name not in NOT_FOR_POSTS and installed(name) is None]


def held_versions(pins: dict[str, str], installed=installed_version) -> list[str]:
    """`name==installed` for each pinned package already there: pip must not change them."""
    return [f"{name}=={version}" for name in pins if (version := installed(name)) is not None]


def install_missing(repo: str | Path) -> list[str]:
    """Install what the posts need and this Python lacks; the requirements installed."""
    pins = pinned_requirements(Path(repo) / "requirements.txt")
    missing = missing_requirements(pins)
    if missing:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
            constraints.write("\n".join(held_versions(pins)) + "\n")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing,
                        "-c", constraints.name], check=True)
        importlib.invalidate_caches()
    return missing
