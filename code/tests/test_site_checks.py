"""The Quarto guards fail on each way a page broke under Quarto 1.10, and pass on a sound notebook."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from fromscratch.site import checks, scaffold

v4 = nbformat.v4
KEYS = {"ho2020denoising"}


def sound_notebook() -> nbformat.NotebookNode:
    return v4.new_notebook(cells=[
        v4.new_raw_cell("---\ntitle: 'A post'\ndescription: One sentence.\n---"),
        v4.new_markdown_cell("Intro [@ho2020denoising], and `numba @njit` in code.\n\n"
                             "::: {.callout-tip}\n## Run this post\n\nText.\n:::"),
        v4.new_code_cell("#| fig-alt: 'A line, $\\lVert x \\rVert$'\n#| code-fold: true\nx = 1"),
    ])


def problems_of(nb: nbformat.NotebookNode, tmp_path: Path) -> list[str]:
    path = tmp_path / "index.ipynb"
    nbformat.write(nb, str(path))
    return checks.notebook_problems(path, KEYS)


def test_sound_notebook_passes(tmp_path: Path) -> None:
    assert problems_of(sound_notebook(), tmp_path) == []


def test_string_sources_fail(tmp_path: Path) -> None:
    path = tmp_path / "index.ipynb"
    path.write_text(json.dumps(sound_notebook()))  # what the old build wrote: one string a cell
    problems = checks.notebook_problems(path, KEYS)
    assert len(problems) == 1 and "source stored as one string" in problems[0]


def test_scaffold_writes_canonical_notebooks(tmp_path: Path) -> None:
    path = tmp_path / "index.ipynb"
    scaffold.write(sound_notebook(), path)
    assert checks.notebook_problems(path, KEYS) == []
    assert isinstance(json.loads(path.read_text())["cells"][1]["source"], list)


@pytest.mark.parametrize("option", ['#| fig-cap: "Unit balls $\\lVert x \\rVert_p = 1$"',
                                    '#| fig-alt: "a \\alpha"', "#| fig-cap: [unclosed"])
def test_cell_options_that_strict_yaml_rejects_fail(tmp_path: Path, option: str) -> None:
    nb = sound_notebook()
    nb.cells[2].source = option + "\nx = 1"
    problems = problems_of(nb, tmp_path)
    assert len(problems) == 1 and problems[0].startswith("cell 2: ")
    assert "not valid YAML" in problems[0] or "control character" in problems[0]


def test_front_matter_that_strict_yaml_rejects_fails(tmp_path: Path) -> None:
    nb = sound_notebook()
    nb.cells[0].source = '---\ntitle: "The $\\lVert x \\rVert$ post"\n---'
    problems = problems_of(nb, tmp_path)
    assert len(problems) == 1 and problems[0].startswith("cell 0: front matter")


def test_unknown_citation_key_fails_in_markdown_and_in_displayed_markdown(tmp_path: Path) -> None:
    nb = sound_notebook()
    nb.cells[1].source += "\n\nAs shown by [@nobody2020]."
    nb.cells[2].outputs = [nbformat.v4.new_output(
        "display_data", data={"text/markdown": "| rung |\n|---|\n| numba @njit |"})]
    problems = problems_of(nb, tmp_path)
    assert any("cell 1: '@nobody2020'" in p for p in problems), problems
    assert any("cell 2: '@njit'" in p for p in problems), problems


def test_escaped_at_and_code_spans_are_not_citations(tmp_path: Path) -> None:
    nb = sound_notebook()
    nb.cells[1].source += "\n\nWrite numba \\@njit, or `@njit`, or mail a@b.org."
    assert problems_of(nb, tmp_path) == []


def test_fence_glued_to_text_fails(tmp_path: Path) -> None:
    nb = sound_notebook()
    nb.cells[1].source = "Intro text. ::: {.callout-tip}\n## Run this post\n:::"
    problems = problems_of(nb, tmp_path)
    assert len(problems) == 1 and "cell 1: a ':::' fence is shown as text" in problems[0]


def test_option_after_code_fails(tmp_path: Path) -> None:
    nb = sound_notebook()
    nb.cells[2].source = "#| code-fold: true\nimport math\n\n#| fig-alt: 'lost'\nx = 1"
    problems = problems_of(nb, tmp_path)
    assert len(problems) == 1 and "comes after code, where Quarto ignores it" in problems[0]
