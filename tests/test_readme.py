"""The README's two commands are the ones CI and users run."""

from site_paths import ROOT


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make site" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -r requirements.txt" in makefile and "ipykernel install" in makefile


def test_rerun_examples_name_real_posts_and_parameters() -> None:
    """Every `papermill posts/<slug>/... -p NAME VALUE` in the docs names a declared parameter."""
    import re

    from fromscratch.site import notebook

    examples = []
    for doc in ("README.md", "about.qmd"):
        text = (ROOT / doc).read_text()
        examples += re.findall(r"papermill posts/([\w-]+)/index\.ipynb \S+ -p (\w+)", text)
    assert examples
    for slug, name in examples:
        params = notebook.parameters(notebook.read(ROOT / "posts" / slug / "index.ipynb"))
        assert name in params, f"{slug} has no parameter {name}"
