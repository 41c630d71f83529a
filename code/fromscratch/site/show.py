"""Show package code on a page: a post teaches with the very source that its later cells call."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from IPython.display import Markdown, display


def source_markdown(fn: Callable) -> str:
    """The source of `fn` as a fenced Python block; numba dispatchers show their Python function."""
    fn = getattr(fn, "py_func", None) or getattr(fn, "fn", None) or fn
    return f"```python\n{inspect.getsource(fn).rstrip()}\n```"


def show_source(fn: Callable) -> None:
    """Display the source of `fn` in the notebook."""
    display(Markdown(source_markdown(fn)))
