"""Where the site's tests look: the repository root and its posts."""

from __future__ import annotations

from pathlib import Path

from fromscratch.site import notebook
from fromscratch.site.build import list_posts

ROOT = Path(__file__).resolve().parents[1]
POSTS = list_posts(ROOT)


def post_notebook(slug: str):
    """The committed notebook of a post."""
    return notebook.read(ROOT / "posts" / slug / "index.ipynb")
