"""Read a post notebook's parts: front matter, parameters, cell options, and hygiene problems."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import yaml

REQUIRED_FRONT_MATTER = ("title", "description", "date", "categories", "image", "image-alt")
CITE_KEY = re.compile(r"(?<![\w@])@([A-Za-z][\w:-]*\w)")
MARKDOWN_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)")


def read(path: str | Path) -> nbformat.NotebookNode:
    """Load a notebook, naming the file in the error if it is not valid JSON."""
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as error:  # nbformat raises several unrelated types
        raise ValueError(f"{path}: not a readable notebook ({error})") from error


def write_canonical(nb: nbformat.NotebookNode, path: str | Path) -> None:
    """Validate `nb` and write it as Jupyter does (sources as lists of lines)."""
    nbformat.validate(nb)
    nbformat.write(nb, str(path))


def string_sources(path: str | Path) -> list[int]:
    """Indices of cells whose source is stored as one string, not as a list of lines.

    Legal nbformat, but Quarto drops the line breaks of such a source.
    """
    cells = json.loads(Path(path).read_text()).get("cells", [])
    return [index for index, cell in enumerate(cells)
            if isinstance(cell.get("source"), str) and cell["source"]]


def front_matter(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The YAML front matter held by the first cell, which must be a raw '---' block."""
    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "raw" or not first.source.lstrip().startswith("---"):
        raise ValueError("the first cell must be a raw cell holding the YAML front matter")
    body = first.source.strip().strip("-").strip()
    data = yaml.safe_load(body) or {}
    if not isinstance(data, dict):
        raise ValueError("the front matter must be a YAML mapping")
    return data


def parameters_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The code cells tagged `parameters` (a post has exactly one)."""
    return [c for c in nb.cells
            if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]


def parameters(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """Names and default values assigned in the parameters cell, in order."""
    cells = parameters_cells(nb)
    if len(cells) != 1:
        raise ValueError(f"a post needs exactly one cell tagged 'parameters', found {len(cells)}")
    try:
        body = ast.parse(cells[0].source).body
    except SyntaxError as error:
        raise ValueError(f"the parameters cell is not valid Python (line {error.lineno}: "
                         f"{error.msg})") from None
    values: dict[str, Any] = {}
    for node in body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        values[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        raise ValueError(
                            f"the parameters cell sets {target.id} = {ast.unparse(node.value)}, "
                            "which is not a literal; write the value itself (papermill and the "
                            "build read it as data)") from None
    return values


def option_lines(source: str) -> list[str]:
    """The `#|` lines that open a code cell (Quarto's cell options)."""
    lines = []
    for line in source.splitlines():
        if not line.startswith("#|"):
            break
        lines.append(line[2:].removeprefix(" "))
    return lines


def cell_options(source: str) -> dict[str, Any]:
    """Quarto's `#| key: value` options at the top of a code cell, parsed as YAML.

    Raises ValueError for options that strict YAML rejects (Quarto stops the render on them),
    such as a backslash escape inside double quotes.
    """
    lines = option_lines(source)
    if not lines:
        return {}
    try:
        options = yaml.safe_load("\n".join(lines))
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[-3:]
        raise ValueError(f"cell options are not valid YAML: {' '.join(problem)}; quote values "
                         "holding backslashes with single quotes") from error
    if not isinstance(options, dict):
        raise ValueError("cell options must be `#| key: value` lines")
    return options


def cited_keys(nb: nbformat.NotebookNode) -> set[str]:
    """Citation keys `[@key]` used in markdown cells."""
    keys = set()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text = re.sub(r"`[^`]*`", "", cell.source)  # code spans are not citations
            for bracket in re.findall(r"\[[^\]]*@[^\]]*\]", text):
                keys.update(CITE_KEY.findall(bracket))
    return keys


def bib_keys(bib_text: str) -> set[str]:
    """Entry keys of a BibTeX file."""
    return set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", bib_text))


def has_outputs(nb: nbformat.NotebookNode) -> bool:
    """True if any code cell carries outputs or an execution count."""
    return any(c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))
               for c in nb.cells)


def figures_without_alt(nb: nbformat.NotebookNode) -> list[str]:
    """Figures that would reach the page without alt text, described for an error message.

    A code cell whose outputs hold an image needs `#| fig-alt:`; a markdown image needs
    non-empty alt text.
    """
    missing = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            missing += [f"cell {index}: markdown image {m['src']}"
                        for m in MARKDOWN_IMAGE.finditer(cell.source) if not m["alt"].strip()]
        elif cell.cell_type == "code":
            makes_image = any(key.startswith("image/")
                              for out in cell.get("outputs", []) for key in out.get("data", {}))
            if makes_image and not str(cell_options(cell.source).get("fig-alt") or "").strip():
                missing.append(f"cell {index}: figure output without '#| fig-alt:'")
    return missing


def error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """Error outputs of an executed notebook, as 'cell N: Name: message'."""
    return [f"cell {index}: {out.get('ename')}: {out.get('evalue')}"
            for index, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]
