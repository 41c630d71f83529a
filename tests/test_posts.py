"""Every post executes on the cpu profile, as `make site` runs it, and its outputs are sound."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from fromscratch.site import checks, notebook
from site_paths import POSTS, ROOT

pytestmark = [pytest.mark.posts, pytest.mark.skipif(not POSTS, reason="no posts yet")]
CPU_BUDGET_SECONDS = 180


@pytest.fixture(scope="session")
def build_report() -> dict[str, dict]:
    """Execute every post once (cpu profile, no rendering) and return the build's report."""
    before = {slug: hashlib.sha256((ROOT / "posts" / slug / "index.ipynb").read_bytes()).hexdigest()
              for slug in POSTS}
    done = subprocess.run([sys.executable, "-m", "fromscratch.site.build", "--no-render"],
                          cwd=ROOT, capture_output=True, text=True)
    print(done.stdout, done.stderr)
    after = {slug: hashlib.sha256((ROOT / "posts" / slug / "index.ipynb").read_bytes()).hexdigest()
             for slug in POSTS}
    assert before == after, "the build modified a committed notebook"
    report = json.loads((ROOT / "_build" / "build-report.json").read_text())
    return {entry["slug"]: entry for entry in report}


@pytest.mark.parametrize("slug", POSTS)
def test_post_executes_within_budget(build_report: dict, slug: str) -> None:
    result = build_report[slug]
    assert result["status"] == "ok", result["error"]
    assert result["seconds"] < CPU_BUDGET_SECONDS


@pytest.mark.parametrize("slug", POSTS)
def test_executed_post_is_sound(build_report: dict, slug: str) -> None:
    assert build_report[slug]["status"] == "ok"
    folder = ROOT / "_build" / "posts" / slug
    executed = notebook.read(folder / "index.ipynb")
    assert not notebook.error_outputs(executed)
    keys = checks.site_bib_keys(ROOT)
    assert checks.notebook_problems(folder / "index.ipynb", keys) == [], "Quarto would break it"
    assert not notebook.figures_without_alt(executed)
    assert (folder / notebook.front_matter(executed)["image"]).exists(), "the run saves its thumbnail"
    shown = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "Produced by the **cpu** profile" in shown
    card = "".join(o.get("text", "") for o in executed.cells[-1].get("outputs", []))
    assert "wall time" in card and "torch" in card and "profile" in card
