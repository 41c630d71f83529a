"""The parts every post shares, generated from _quarto.yml: run box, Colab set-up, closing card.

    python -m fromscratch.site.scaffold new SLUG "Title"   # start a post
    python -m fromscratch.site.scaffold sync               # rewrite the shared cells of every post

`sync` keeps each post's "Run this post" box and Colab cell identical to what _quarto.yml's
repo-url implies, so the repository is named in one place; a test fails when they drift.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import nbformat
import yaml

from fromscratch.site import notebook
from fromscratch.site.build import find_root

RUN_BOX_TAG = "run-this-post"
COLAB_TAG = "colab-setup"
CARD_TAG = "environment-card"
HIDDEN = "#| include: false"  # runs, but neither code nor output reaches the page
NO_ECHO = "#| echo: false"  # its output reaches the page, its code does not


def site_config(root: Path) -> dict:
    """The `website` block of _quarto.yml."""
    return yaml.safe_load((root / "_quarto.yml").read_text())["website"]


def repo_path(repo_url: str) -> str:
    """'owner/name' of a GitHub URL."""
    return repo_url.rstrip("/").removeprefix("https://github.com/")


def run_box(root: Path, slug: str) -> str:
    """Markdown of the 'Run this post' callout for `slug`."""
    repo_url = site_config(root)["repo-url"].rstrip("/")
    folder = repo_url.rsplit("/", 1)[-1]
    colab = (f"https://colab.research.google.com/github/{repo_path(repo_url)}/blob/main/"
             f"posts/{slug}/index.ipynb")
    return f"""::: {{.callout-tip collapse="true"}}
## Run this post

This page is a Jupyter notebook, executed by papermill before publishing. To rerun it on your
machine (a laptop CPU is enough for the default parameters, offline):

```bash
git clone {repo_url} && cd {folder}
make site                    # once: virtual environment, packages, every post
.venv/bin/papermill posts/{slug}/index.ipynb out.ipynb     # add -p NAME VALUE to change a parameter
```

Or open [the notebook]({repo_url}/blob/main/posts/{slug}/index.ipynb) in Jupyter (kernel
*Python (fromscratch)*), or [open it in Colab]({colab}) and choose *Run all*: the free CPU
runtime runs the default parameters; the gpu profile (`gpu.yml`) needs a GPU runtime. The first
cell clones the repository and installs the few packages Colab lacks, which takes a minute or
two, with no restart.
:::"""


def colab_setup(root: Path) -> str:
    """Code of the first code cell: in Colab only, the package importable and what Colab lacks.

    It puts the clone's `code/` on `sys.path` (importable at once, no restart) and installs only
    missing packages, holding Colab's own torch and numpy (`fromscratch.site.colab`).
    FROMSCRATCH_REPO_URL and FROMSCRATCH_CLONE redirect the clone (the test that plays Colab).
    """
    repo_url = site_config(root)["repo-url"].rstrip("/")
    return f'''{HIDDEN}
# In Colab only: clone the repository, import its package from the clone, and install only what
# Colab lacks (its torch and numpy stay), so "Run all" runs in one pass, with no restart.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    clone = os.environ.get("FROMSCRATCH_CLONE", "/content/fromscratch")
    url = os.environ.get("FROMSCRATCH_REPO_URL", "{repo_url}")
    if not os.path.isdir(clone):
        subprocess.run(["git", "clone", "--depth", "1", url, clone], check=True)
    sys.path.insert(0, os.path.join(clone, "code"))
    from fromscratch.site.colab import install_missing

    install_missing(clone)'''


CARD_SOURCE = "# The environment card: what produced this page.\nrun.card()"


def tagged(nb: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    """Cells of `nb` carrying `tag`."""
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def expected_shared_cells(root: Path, slug: str) -> dict[str, str]:
    """Tag -> source of the cells every post shares."""
    return {RUN_BOX_TAG: run_box(root, slug), COLAB_TAG: colab_setup(root), CARD_TAG: CARD_SOURCE}


def new_post(root: Path, slug: str, title: str) -> Path:
    """Write posts/<slug>/index.ipynb: front matter, run box, parameters, environment card."""
    if not slug.replace("-", "").isalnum() or slug != slug.lower():
        raise SystemExit(f"bad slug {slug!r}: use lower-case letters, digits and '-'")
    folder = root / "posts" / slug
    if (folder / "index.ipynb").exists():
        raise SystemExit(f"posts/{slug}/index.ipynb exists already")
    folder.mkdir(parents=True, exist_ok=True)
    v4 = nbformat.v4
    front = {"title": title, "description": "One sentence: the abstract and the listing blurb.",
             "date": dt.date.today().isoformat(), "categories": ["foundations"],
             "image": "thumbnail.png",
             "image-alt": "What the listing image shows, for readers who cannot see it."}
    cells = [
        v4.new_raw_cell("---\n" + yaml.safe_dump(front, sort_keys=False) + "---"),
        v4.new_markdown_cell("Introduce the post here.\n\n" + run_box(root, slug),
                             metadata={"tags": [RUN_BOX_TAG]}),
        v4.new_code_cell(colab_setup(root), metadata={"tags": [COLAB_TAG]}),
        v4.new_code_cell(f"{HIDDEN}\n"
                         'profile = "cpu"  # "cpu": minutes on a laptop, offline; "gpu": full scale\n'
                         'device = "auto"  # "auto" picks CUDA where available',
                         metadata={"tags": ["parameters"]}),
        v4.new_code_cell(f"{NO_ECHO}\nfrom fromscratch.site import RunInfo\n\n"
                         "run = RunInfo.start(profile, device)\nrun"),
        v4.new_code_cell(CARD_SOURCE, metadata={"tags": [CARD_TAG]}),
    ]
    nb = v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    write(nb, folder / "index.ipynb")
    (folder / "gpu.yml").write_text('device: "cuda"\n')
    return folder / "index.ipynb"


def write(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write a notebook the way the repository keeps them: no outputs, canonical nbformat.

    `notebook.write_canonical` stores sources as lists of lines, as Jupyter does; Quarto drops
    the line breaks of a source stored as one string.
    """
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.pop("id", None)
    nb.nbformat_minor = 4
    notebook.write_canonical(nb, path)


def sync(root: Path) -> list[str]:
    """Rewrite the shared cells of every post from _quarto.yml; the slugs that changed."""
    from fromscratch.site.build import list_posts

    changed = []
    for slug in list_posts(root):
        path = root / "posts" / slug / "index.ipynb"
        nb = notebook.read(path)
        before = json.dumps(nb, sort_keys=True)
        for tag, source in expected_shared_cells(root, slug).items():
            for cell in tagged(nb, tag):
                if tag == RUN_BOX_TAG:  # the box ends the cell; the intro above it is the post's
                    intro = cell.source.split("::: {.callout-tip", 1)[0]
                    cell.source = intro + source
                else:
                    cell.source = source
        if json.dumps(nb, sort_keys=True) != before:
            write(nb, path)
            changed.append(slug)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fromscratch.site.scaffold")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="start a post")
    new.add_argument("slug")
    new.add_argument("title")
    sub.add_parser("sync", help="rewrite every post's shared cells from _quarto.yml")
    sub.add_parser("clean", help="strip outputs and execution counts from every post")
    args = parser.parse_args(argv)
    root = find_root()
    if args.command == "new":
        print(new_post(root, args.slug, args.title))
    elif args.command == "clean":
        from fromscratch.site.build import list_posts

        for slug in list_posts(root):
            path = root / "posts" / slug / "index.ipynb"
            write(notebook.read(path), path)
        print("cleaned: " + ", ".join(list_posts(root)))
    else:
        print("updated: " + (", ".join(sync(root)) or "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
