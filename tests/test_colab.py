"""Colab, played here: a fresh kernel, a stand-in `google.colab`, the post's own set-up cell, then
the post's next cells in the same kernel with no restart."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from fromscratch.site import colab, scaffold
from fromscratch.site.build import kernel_name
from site_paths import ROOT, post_notebook

PLAYED_POST = "einsum"

# Colab as the post meets it: `google.colab` already imported, and no `fromscratch` installed
# (this environment's editable install is taken off the import path first).
COLAB_STAND_IN = '''
import os, sys, types
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                    and "editable" not in getattr(f, "__name__", "").lower()]
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/code")]
for name in [m for m in sys.modules if m == "fromscratch" or m.startswith("fromscratch.")]:
    del sys.modules[name]
try:
    import fromscratch  # noqa: F401
    raise AssertionError("the stand-in still sees an installed fromscratch")
except ModuleNotFoundError:
    pass
sys.modules["google"] = types.ModuleType("google")
sys.modules["google.colab"] = types.ModuleType("google.colab")
os.environ["FROMSCRATCH_REPO_URL"] = {repo!r}
os.environ["FROMSCRATCH_CLONE"] = {clone!r}
'''


def first_cells(slug: str) -> list[nbformat.NotebookNode]:
    """The post's code cells up to its first section: set-up, parameters, run info, imports."""
    cells = []
    for cell in post_notebook(slug).cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            break
        if cell.cell_type == "code":
            cells.append(cell)
    return cells


def test_run_all_in_colab_needs_no_restart(tmp_path: Path) -> None:
    cells = first_cells(PLAYED_POST)
    assert scaffold.COLAB_TAG in cells[0].metadata.get("tags", [])
    clone = tmp_path / "content" / "fromscratch"
    setup = COLAB_STAND_IN.format(repo=str(ROOT), clone=str(clone))
    proof = ("import fromscratch\n"
             f"assert fromscratch.__file__.startswith({str(clone)!r}), fromscratch.__file__\n"
             "print(run.parameters_markdown())")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(setup), *cells,
                                         nbformat.v4.new_code_cell(proof)])
    NotebookClient(nb, kernel_name=kernel_name(), timeout=300, resources={
        "metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "Produced by the **cpu** profile" in printed
    assert (clone / "requirements.txt").exists(), "the set-up cell cloned the repository"


def test_only_missing_packages_are_installed_and_loaded_ones_are_held(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pins\ntorch==2.13.0\nfaiss-cpu==1.15.1\nnumba-cuda[cu13]==0.30.4\n"
                            "pytest==9.2.0\n-e ./code\n")
    pins = colab.pinned_requirements(requirements)
    assert pins == {"torch": "2.13.0", "faiss-cpu": "1.15.1", "numba-cuda": "0.30.4",
                    "pytest": "9.2.0"}
    colab_has = {"torch": "2.9.0+cu126"}.get
    assert colab.missing_requirements(pins, colab_has) == ["faiss-cpu==1.15.1",
                                                          "numba-cuda==0.30.4"]
    assert colab.held_versions(pins, colab_has) == ["torch==2.9.0+cu126"]
