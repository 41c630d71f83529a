"""Benchmarks: each module here measures one piece of the package against its reference library.

A benchmark module defines `run(quick: bool = False) -> dict`: its measurements, with the ratios
against the reference taken in the same run. `python -m fromscratch.benchmarks [NAME ...]` runs
them and writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import importlib
import pkgutil


def available() -> list[str]:
    """Names of the benchmark modules."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def run(name: str, quick: bool = False) -> dict:
    """Run one benchmark by name."""
    if name not in available():
        raise ValueError(f"unknown benchmark {name!r}; benchmarks: {', '.join(available())}")
    return importlib.import_module(f"{__name__}.{name}").run(quick=quick)
