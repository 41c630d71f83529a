"""What Quarto needs of a notebook, checked without Quarto: the build and the tests both run these.

Each check guards one way a page broke when Quarto 1.10 rendered it:

* sources stored as one string (Quarto drops their line breaks: glued words, front matter as text);
* `#|` options or front matter that strict YAML rejects (Quarto stops the whole render);
* `@word` in Markdown, also in Markdown a cell displays, that is no key of references.bib
  (Pandoc reads it as a citation and mangles the text);
* a `:::` fence that reaches the text instead of opening or closing a div.

The Markdown checks parse with a real Pandoc (the `pypandoc-binary` package), as Quarto does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat

from fromscratch.site import notebook

MARKDOWN_OUTPUT = "text/markdown"
# Pandoc's Markdown as Quarto reads it: fenced divs, bracketed spans, citations, TeX math.
PANDOC_FORMAT = "markdown+fenced_divs+bracketed_spans+citations+tex_math_dollars"


def markdown_texts(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell index, text) of every markdown cell and every Markdown output a cell displays."""
    texts = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            texts.append((index, cell.source))
        elif cell.cell_type == "code":
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                if MARKDOWN_OUTPUT in data:
                    text = data[MARKDOWN_OUTPUT]
                    texts.append((index, "".join(text) if isinstance(text, list) else text))
    return texts


def pandoc_ast(markdown: str) -> dict[str, Any]:
    """Pandoc's syntax tree of `markdown`."""
    import pypandoc

    return json.loads(pypandoc.convert_text(markdown, "json", format=PANDOC_FORMAT))


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every element of a Pandoc syntax tree, depth first."""
    if isinstance(node, dict):
        if "t" in node:
            yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def citation_ids(markdown: str) -> set[str]:
    """The citation keys Pandoc reads in `markdown`."""
    return {c["citationId"] for node in walk(pandoc_ast(markdown)) if node["t"] == "Cite"
            for c in node["c"][0]}


def shows_fence(markdown: str) -> bool:
    """True if a `:::` of `markdown` reaches the text instead of opening or closing a div."""
    return any(node["t"] == "Str" and ":::" in node["c"] for node in walk(pandoc_ast(markdown)))


def rendered_problems(texts: list[tuple[int, str]], bib_keys: set[str]) -> list[str]:
    """Unknown citation keys and stray `:::` fences in the Markdown of a page, by cell."""
    if not texts:
        return []
    tree = pandoc_ast("\n\n".join(text for _, text in texts))
    cited = {c["citationId"] for node in walk(tree) if node["t"] == "Cite" for c in node["c"][0]}
    # pandoc runs once a page; a problem found is then traced to its cells, one text at a time
    fences = any(node["t"] == "Str" and ":::" in node["c"] for node in walk(tree))
    problems = []
    for key in sorted(cited - bib_keys):
        cells = sorted({index for index, text in texts
                        if f"@{key}" in text and key in citation_ids(text)})
        problems.append(f"cell {', '.join(map(str, cells))}: '@{key}' is read as a citation but "
                        "references.bib has no such key; put code names in backticks or write \\@")
    if fences:
        cells = [index for index, text in texts if ":::" in text and shows_fence(text)]
        problems.append(f"cell {', '.join(map(str, cells))}: a ':::' fence is shown as text; a "
                        "fence needs a line of its own, with blank lines around the div")
    return problems


def option_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Front matter and `#|` cell options that strict YAML rejects."""
    problems = []
    try:
        notebook.front_matter(nb)
    except Exception as error:  # yaml's and ours: both mean Quarto cannot read the page
        problems.append(f"cell 0: front matter: {' '.join(str(error).split())}")
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            try:
                options = notebook.cell_options(cell.source)
            except ValueError as error:
                problems.append(f"cell {index}: {error}")
                continue
            opening = len(notebook.option_lines(cell.source))
            stray = [line for line in cell.source.splitlines()[opening:] if line.startswith("#|")]
            if stray:
                problems.append(f"cell {index}: {stray[0][:40]!r} comes after code, where Quarto "
                                "ignores it; put every '#|' option at the top of the cell")
            for key, value in options.items():
                if isinstance(value, str) and any(ord(ch) < 32 and ch != "\n" for ch in value):
                    problems.append(f"cell {index}: option {key} holds a control character: a "
                                    "backslash escape in double quotes (\\a, \\b, \\t...); "
                                    "use single quotes")
    return problems


def executed_problems(nb: nbformat.NotebookNode, bib_keys: set[str]) -> list[str]:
    """What would break the page of an executed notebook, outputs included."""
    return option_problems(nb) + rendered_problems(markdown_texts(nb), bib_keys)


def notebook_problems(path: Path, bib_keys: set[str]) -> list[str]:
    """Everything in the notebook at `path` that would break its page under Quarto."""
    problems = []
    string_cells = notebook.string_sources(path)
    if string_cells:
        problems.append(f"cells {string_cells[:5]}{'...' if len(string_cells) > 5 else ''}: "
                        "source stored as one string; write notebooks with nbformat.write")
    nb = notebook.read(path)
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as error:
        problems.append(f"not valid nbformat: {error.message}")
    return problems + executed_problems(nb, bib_keys)


def site_bib_keys(root: Path) -> set[str]:
    """Keys of the site's references.bib (none if it has none)."""
    bib = root / "references.bib"
    return notebook.bib_keys(bib.read_text()) if bib.exists() else set()
