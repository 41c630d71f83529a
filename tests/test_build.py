"""The build's behaviour on a small throwaway site: errors, failures, and the _site/ swap."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fromscratch.site import notebook

v4 = nbformat.v4


def make_post(root: Path, slug: str, body: str, gpu_yml: str | None = None) -> None:
    """A minimal post: front matter, a parameters cell, one cell of `body`."""
    folder = root / "posts" / slug
    folder.mkdir(parents=True)
    nb = v4.new_notebook(cells=[
        v4.new_raw_cell(f"---\ntitle: {slug}\n---"),
        v4.new_code_cell('profile = "cpu"\nsize = 3\nlr = 0.1\nflag = True',
                         metadata={"tags": ["parameters"]}),
        v4.new_code_cell(body),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}})
    nbformat.write(nb, str(folder / "index.ipynb"))
    if gpu_yml is not None:
        (folder / "gpu.yml").write_text(gpu_yml)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site with one good post and one whose second cell raises."""
    (tmp_path / "_quarto.yml").write_text("project:\n  type: website\n")
    (tmp_path / "index.qmd").write_text("---\ntitle: test\n---\n")
    make_post(tmp_path, "good", "print('size is', size)", gpu_yml="size: 5\n")
    make_post(tmp_path, "bad", "1 / 0")
    return tmp_path


def run_build(root: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path if path is not None else os.environ["PATH"]}
    return subprocess.run([sys.executable, "-m", "fromscratch.site.build", "--root", str(root),
                           "--no-quarto-install", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_quarto(folder: Path, exit_code: int) -> str:
    """A `quarto` on PATH that writes index.html into --output-dir, or fails."""
    folder.mkdir()
    script = folder / "quarto"
    script.write_text(f"""#!{sys.executable}
import pathlib, sys
out = pathlib.Path(sys.argv[sys.argv.index("--output-dir") + 1])
if {exit_code}:
    out.mkdir(parents=True); (out / "half.html").write_text("partial")
    sys.exit({exit_code})
out.mkdir(parents=True)
(out / "index.html").write_text("new site")
""")
    script.chmod(0o755)
    return f"{folder}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin"


@pytest.mark.parametrize(("args", "message"), [
    (["--posts", "nope"], "unknown post 'nope'; posts: bad, good"),
    (["--profile", "tpu"], "unknown profile 'tpu'; profiles: cpu, gpu"),
    (["--posts", "good", "--param", "steps=3"],
     "has no parameter 'steps'; its parameters: profile, size, lr, flag"),
    (["--posts", "good", "--param", "oops"], "bad --param 'oops'"),
    (["--posts", "good", "--param", "profile=gpu"], "choose the profile with --profile"),
    (["--posts", "good", "--param", "size=1e-3"], "--param size=1e-3 for post 'good': expected an integer"),
    (["--posts", "good", "--param", "lr=fast"], "--param lr=fast for post 'good': expected a number"),
    (["--posts", "good", "--param", "flag=maybe"], "expected true or false"),
    (["--root", "/nonexistent/site"], "--root /nonexistent/site: no such folder"),
    (["--posts", "bad", "--profile", "gpu"], "post 'bad' has no gpu.yml"),
])
def test_bad_requests_fail_in_one_line(site: Path, args: list[str], message: str) -> None:
    done = run_build(site, *args) if "--root" not in args else run_build(Path(args[1]), *args[2:])
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert message in done.stderr
    assert not (site / "_build" / "posts").exists()


def test_failing_post_is_named_and_site_is_untouched(site: Path) -> None:
    (site / "_site").mkdir()
    (site / "_site" / "index.html").write_text("old site")
    sources = {p: digest(p) for p in site.glob("posts/*/index.ipynb")}
    done = run_build(site)
    assert done.returncode == 1
    assert "FAILED bad: cell" in done.stderr and "ZeroDivisionError" in done.stderr
    assert "1 of 2 posts failed" in done.stderr
    report = {r["slug"]: r for r in json.loads((site / "_build/build-report.json").read_text())}
    assert report["good"]["status"] == "ok" and report["bad"]["status"] == "failed"
    assert (site / "_site" / "index.html").read_text() == "old site"
    assert {p: digest(p) for p in sources} == sources, "the build modified a committed notebook"


def test_executed_notebook_is_stamped_and_parameters_injected(site: Path) -> None:
    done = run_build(site, "--posts", "good", "--profile", "gpu", "--no-render")
    assert done.returncode == 0, done.stderr
    executed = nbformat.read(str(site / "_build/posts/good/index.ipynb"), as_version=4)
    stamp = executed.metadata["fromscratch"]
    assert stamp["profile"] == "gpu" and stamp["status"] == "ok"
    assert stamp["parameters"] == {"size": 5, "profile": "gpu"}
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "size is 5" in printed


def test_missing_quarto_is_one_line_and_not_an_error(site: Path) -> None:
    (site / "posts" / "bad" / "index.ipynb").unlink()
    (site / "posts" / "bad").rmdir()
    done = run_build(site, path=f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin")
    assert done.returncode == 0, done.stderr
    skipped = [line for line in done.stdout.splitlines() if "rendering skipped" in line]
    assert len(skipped) == 1 and "Quarto is not installed" in skipped[0]
    assert "_build/posts" in skipped[0]


def test_render_swaps_site_only_on_success(site: Path, tmp_path_factory) -> None:
    (site / "posts" / "bad" / "index.ipynb").unlink()
    (site / "posts" / "bad").rmdir()
    (site / "_site").mkdir()
    (site / "_site" / "index.html").write_text("old site")
    failing = fake_quarto(tmp_path_factory.mktemp("q") / "bin", exit_code=1)
    done = run_build(site, path=failing)
    assert done.returncode == 1 and "quarto render failed" in done.stderr
    assert (site / "_site" / "index.html").read_text() == "old site"
    assert not (site / "_site.new").exists()
    working = fake_quarto(tmp_path_factory.mktemp("q") / "bin", exit_code=0)
    done = run_build(site, "--render-only", path=working)
    assert done.returncode == 0, done.stderr
    assert (site / "_site" / "index.html").read_text() == "new site"


def test_render_only_refuses_stale_notebooks(site: Path) -> None:
    done = run_build(site, "--render-only")
    assert done.returncode == 1
    assert "rendering skipped: bad, good not executed from the current source" in done.stdout


def test_root_that_is_not_a_site_is_one_line(tmp_path: Path) -> None:
    done = run_build(tmp_path)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "is not a site: it has no _quarto.yml" in done.stderr
    assert not (tmp_path / "_build").exists()


def test_parameter_values_take_the_declared_type(site: Path) -> None:
    done = run_build(site, "--posts", "good", "--no-render", "--param", "lr=1e-3",
                     "--param", "size=010", "--param", "flag=no")
    assert done.returncode == 0, done.stderr
    stamp = nbformat.read(str(site / "_build/posts/good/index.ipynb"), 4).metadata["fromscratch"]
    assert stamp["parameters"] == {"lr": 0.001, "size": 10, "flag": False}
    (site / "posts" / "good" / "gpu.yml").write_text("lr: null\nsize: 7\n")  # null: switched off
    done = run_build(site, "--posts", "good", "--no-render", "--profile", "gpu")
    assert done.returncode == 0, done.stderr
    stamp = nbformat.read(str(site / "_build/posts/good/index.ipynb"), 4).metadata["fromscratch"]
    assert stamp["parameters"] == {"lr": None, "size": 7, "profile": "gpu"}


@pytest.mark.parametrize(("broken", "message"), [
    ("gpu.yml", "post 'bad': gpu.yml is not valid YAML (line 2)"),
    ("gpu list", "post 'bad': gpu.yml must map parameter names to values, not hold a list"),
    ("gpu type", "post 'bad': gpu.yml size: expected int, got str 'big'"),
    ("notebook", "not a readable notebook"),
    ("parameters", "the parameters cell sets size = 2 * 3, which is not a literal"),
])
def test_broken_post_fails_alone_in_one_line(site: Path, broken: str, message: str) -> None:
    folder = site / "posts" / "bad"
    if broken == "gpu.yml":
        (folder / "gpu.yml").write_text("size: [1, 2\n")
    elif broken == "gpu list":
        (folder / "gpu.yml").write_text("- size: 1\n")
    elif broken == "gpu type":
        (folder / "gpu.yml").write_text("size: big\n")
    elif broken == "notebook":
        (folder / "index.ipynb").write_text('{"cells": [')
    else:
        nb = nbformat.read(str(folder / "index.ipynb"), 4)
        nb.cells[1].source = 'profile = "cpu"\nsize = 2 * 3'
        nbformat.write(nb, str(folder / "index.ipynb"))
    profile = ["--profile", "gpu"] if broken.startswith("gpu") else []
    done = run_build(site, "--no-render", *profile)
    assert done.returncode == 1
    failures = [line for line in done.stderr.splitlines() if line.startswith("FAILED bad")]
    assert len(failures) == 1 and message in failures[0], done.stderr
    report = {r["slug"]: r["status"] for r in json.loads((site / "_build/build-report.json").read_text())}
    assert report == {"bad": "failed", "good": "ok"}


def test_build_leftovers_do_not_poison_later_builds(site: Path) -> None:
    (site / "_build" / "posts" / "good").mkdir(parents=True)
    (site / "_build" / "posts" / "good" / "index.ipynb").write_text("not json")
    (site / "_build" / "posts" / "gone").mkdir(parents=True)
    (site / "_build" / "posts" / "gone" / "index.ipynb").write_text("{}")
    done = run_build(site, "--posts", "good", "--no-render")
    assert done.returncode == 0, done.stderr
    assert not (site / "_build" / "posts" / "gone").exists(), "a deleted post's page stayed"


def test_executed_notebook_is_canonical_and_hides_setup(site: Path) -> None:
    done = run_build(site, "--posts", "good", "--no-render", "--param", "size=4")
    assert done.returncode == 0, done.stderr
    assert "without encryption" not in done.stdout + done.stderr
    path = site / "_build/posts/good/index.ipynb"
    assert notebook.string_sources(path) == []
    nbformat.validate(nbformat.read(str(path), 4))
    injected = [c for c in nbformat.read(str(path), 4).cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and injected[0].source.startswith("#| include: false\n")


def test_output_that_quarto_would_break_fails_the_post(site: Path) -> None:
    make_post(site, "cites", "from IPython.display import Markdown, display\n"
                             "display(Markdown('| rung |\\n|---|\\n| numba @njit |'))")
    done = run_build(site, "--posts", "cites", "--no-render")
    assert done.returncode == 1
    assert "FAILED cites: Quarto would break the page: cell 2: '@njit' is read as a citation" \
        in done.stderr
