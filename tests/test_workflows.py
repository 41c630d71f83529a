"""The GitHub workflows: zizmor and the workflow schema pass, and publishing is safe by construction."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fromscratch.site.build import list_posts

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CI, PUBLISH = WORKFLOWS / "ci.yml", WORKFLOWS / "publish.yml"
BIN = Path(sys.executable).parent
PINNED_USES = re.compile(r"^\s*(?:-\s*)?uses:\s*(?P<action>[\w.-]+/[\w./-]+)@(?P<ref>\S+)"
                         r"(?:\s+#\s*(?P<version>v\d+(?:\.\d+){0,2}))?\s*$")


def load(path: Path) -> dict[str, Any]:
    workflow = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as True
    return workflow


def tool(name: str) -> str:
    found = BIN / name
    if not found.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}; run `make setup` (it is pinned in "
                    "requirements.txt)")
    return str(found)


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def uses(step: dict[str, Any]) -> str:
    return step.get("uses", "").split("@")[0]


def jobs_using(workflow: dict[str, Any], action: str) -> list[str]:
    return [name for name, job in workflow["jobs"].items() if any(uses(s) == action for s in steps(job))]


def needs(job: dict[str, Any]) -> list[str]:
    value = job.get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def upstream(workflow: dict[str, Any], name: str) -> set[str]:
    """Every job that `name` waits for, directly or through other jobs."""
    found: set[str] = set()
    todo = needs(workflow["jobs"][name])
    while todo:
        job = todo.pop()
        if job not in found:
            found.add(job)
            todo.extend(needs(workflow["jobs"][job]))
    return found


def matrix_job(publish: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    [(name, job)] = [(n, j) for n, j in publish["jobs"].items() if "matrix" in j.get("strategy", {})]
    return name, job


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return load(CI)


@pytest.fixture(scope="module")
def publish() -> dict[str, Any]:
    return load(PUBLISH)


def test_zizmor_finds_nothing_at_medium_or_above() -> None:
    # The auditor persona runs every audit, including those that may give false positives; nothing is
    # silenced by a config file or an ignore comment. --offline: no network to GitHub needed.
    done = subprocess.run([tool("zizmor"), "--offline", "--no-config", "--no-ignores", "--persona", "auditor",
                           "--min-severity", "medium", "--format", "json", "--no-progress", str(CI),
                           str(PUBLISH)], capture_output=True, text=True, timeout=120)
    findings = json.loads(done.stdout or "[]")
    described = [f"{f['ident']}: {f['desc']}" for f in findings]
    assert done.returncode == 0 and not findings, f"zizmor exit {done.returncode}: {described}\n{done.stderr}"


def test_workflows_match_the_github_workflow_schema() -> None:
    done = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(CI),
                           str(PUBLISH)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_triggers(ci: dict[str, Any], publish: dict[str, Any]) -> None:
    assert set(ci["on"]) == {"push", "pull_request"}
    assert set(publish["on"]) == {"push", "workflow_dispatch"}, "publish never runs for pull requests"
    assert publish["on"]["push"]["branches"] == ["main"]
    for workflow in (ci, publish):
        assert not {"pull_request_target", "workflow_run"} & set(workflow["on"])


def test_nothing_but_main_reaches_the_gpu_runner(publish: dict[str, Any]) -> None:
    name, _ = matrix_job(publish)
    guards = [publish["jobs"][job].get("if", "") for job in upstream(publish, name)]
    assert "github.ref == 'refs/heads/main'" in guards, "a dispatch on another branch stops before the GPU"


def test_concurrency(ci: dict[str, Any], publish: dict[str, Any]) -> None:
    assert ci["concurrency"]["group"] and ci["concurrency"]["cancel-in-progress"] is True
    # Two publishes never overlap, and a running deploy is never cancelled halfway.
    assert publish["concurrency"] == {"group": "publish-pages", "cancel-in-progress": False}


def test_permissions_are_least_privilege_per_job(ci: dict[str, Any], publish: dict[str, Any]) -> None:
    for workflow in (ci, publish):
        assert workflow["permissions"] == {}, "no permission at the top: each job asks for its own"
        for name, job in workflow["jobs"].items():
            assert "permissions" in job, f"job {name} must declare its permissions"
            granted = job["permissions"]
            assert isinstance(granted, dict), f"job {name}: list permissions one by one"
            writes = {scope for scope, level in granted.items() if level == "write"}
            if name == "deploy":
                assert granted == {"pages": "write", "id-token": "write"}
            else:
                assert not writes, f"job {name} asks for write access: {writes}"
                assert set(granted) <= {"contents", "pages"}, f"job {name}: {granted}"


def test_deploy_happens_only_after_every_post_succeeded(publish: dict[str, Any]) -> None:
    jobs = publish["jobs"]
    posts, job = matrix_job(publish)
    assert job["strategy"]["fail-fast"] is False, "every post runs, so one publish names every failure"
    assert jobs_using(publish, "actions/deploy-pages") == ["deploy"]
    assert jobs_using(publish, "actions/upload-pages-artifact") == ["render"]
    assert jobs_using(publish, "actions/download-artifact") == ["render"]
    assert jobs_using(publish, "quarto-dev/quarto-actions/setup") == ["render"]
    assert posts in upstream(publish, "render") and "render" in upstream(publish, "deploy")
    # No job-level `if` may override the default success() of `needs` on the way to the deploy:
    # a skipped or failed post then skips the render and the deploy, and the live site stays.
    for name in {"render", "deploy"} | (upstream(publish, "deploy") - upstream(publish, posts) - {posts}):
        condition = jobs[name].get("if", "")
        assert not re.search(r"always|failure|cancelled|skipped", condition), f"{name}: if: {condition}"
    assert jobs["deploy"]["environment"]["name"] == "github-pages"
    render_runs = [s.get("run", "") for s in steps(jobs["render"])]
    assert "make render" in render_runs


def test_post_matrix_comes_from_the_posts_folder(publish: dict[str, Any]) -> None:
    _, job = matrix_job(publish)
    [lister] = needs(job)
    assert job["strategy"]["matrix"] == {"slug": f"${{{{ fromJSON(needs.{lister}.outputs.slugs) }}}}"}
    [listing] = [s for s in steps(publish["jobs"][lister]) if s.get("id") == "list"]
    assert publish["jobs"][lister]["outputs"]["slugs"] == "${{ steps.list.outputs.slugs }}"
    assert 'glob("*/index.ipynb")' in listing["run"]


def run_listing(publish: dict[str, Any], site: Path, output: Path) -> tuple[int, str]:
    """Run the publish workflow's listing step in `site`, as the runner would: (exit code, its output)."""
    _, job = matrix_job(publish)
    [listing] = [s for s in steps(publish["jobs"][needs(job)[0]]) if s.get("id") == "list"]
    assert listing["shell"] == "python"
    output.write_text("")
    done = subprocess.run([sys.executable, "-c", listing["run"]], cwd=site, capture_output=True, text=True,
                          env={**os.environ, "GITHUB_OUTPUT": str(output)}, timeout=60)
    return done.returncode, output.read_text()


def test_listing_step_gives_the_builds_posts(publish: dict[str, Any], tmp_path: Path) -> None:
    site, output = tmp_path / "site", tmp_path / "github_output"
    for folder in ("posts/matmul", "posts/ddim-sampling", "posts/drafts"):
        (site / folder).mkdir(parents=True)
    for slug in ("matmul", "ddim-sampling"):
        (site / "posts" / slug / "index.ipynb").write_text("{}")
    (site / "posts" / "_metadata.yml").write_text("author: x\n")
    assert run_listing(publish, site, output) == (0, 'slugs=["ddim-sampling", "matmul"]\n')
    assert list_posts(site) == ["ddim-sampling", "matmul"]
    code, slugs = run_listing(publish, ROOT, output)
    if list_posts(ROOT):
        assert (code, slugs) == (0, f"slugs={json.dumps(list_posts(ROOT))}\n")
    else:
        assert code != 0 and slugs == "", "no posts must fail the publish, not deploy an empty site"
    (site / "posts" / "matmul" / "bad name").mkdir()
    (site / "posts" / "matmul" / "bad name" / "index.ipynb").write_text("{}")
    assert run_listing(publish, site / "posts" / "matmul", output)[0] != 0, "a slug unfit for a name fails"


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    versions: dict[tuple[str, str], set[str]] = {}
    for path in (CI, PUBLISH):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not re.match(r"^\s*(?:-\s*)?uses:", line):
                continue
            found = PINNED_USES.match(line)
            assert found, f"{path.name}:{number}: cannot read {line.strip()!r}"
            assert re.fullmatch(r"[0-9a-f]{40}", found["ref"]), f"{path.name}:{number}: pin to a commit SHA"
            assert found["version"], f"{path.name}:{number}: add the release as a comment, e.g. # v1.2.3"
            repo = "/".join(found["action"].split("/")[:2])  # quarto-dev/quarto-actions/setup: one repo
            versions.setdefault((repo, found["ref"]), set()).add(found["version"])
    assert all(len(tags) == 1 for tags in versions.values()), f"one version per commit: {versions}"
    shas: dict[str, set[str]] = {}
    for repo, sha in versions:
        shas.setdefault(repo, set()).add(sha)
    assert all(len(pins) == 1 for pins in shas.values()), f"one commit per action everywhere: {shas}"


def test_checkouts_keep_no_credentials(ci: dict[str, Any], publish: dict[str, Any]) -> None:
    for workflow in (ci, publish):
        for step in (s for job in workflow["jobs"].values() for s in steps(job)):
            if uses(step) == "actions/checkout":
                assert step["with"]["persist-credentials"] is False


def test_secrets_only_where_needed(ci: dict[str, Any], publish: dict[str, Any]) -> None:
    assert "secrets." not in CI.read_text(), "CI runs pull requests from forks: it must need no secret"
    text = PUBLISH.read_text()
    assert "toJSON(secrets" not in text and "inherit" not in text
    assert "env" not in publish, "no workflow-wide env: it would reach every job"
    posts, job = matrix_job(publish)
    for name, other in publish["jobs"].items():
        if name != posts:
            assert "secrets." not in yaml.safe_dump(other), f"job {name} needs no secret"
    assert "secrets." not in yaml.safe_dump(job.get("env", {})), "secrets go to the step that needs them"
    holders = [s for s in steps(job) if "secrets." in yaml.safe_dump(s)]
    assert [s["env"]["HF_TOKEN"] for s in holders] == ["${{ secrets.HF_TOKEN }}"]
    assert all("secrets." not in s.get("run", "") and "HF_TOKEN" not in s.get("run", "") for s in holders)
    assert job["environment"]["name"] == "gpu", "the token is an environment secret, not a repository one"


def test_gpu_job_runs_the_projects_command_on_the_configured_runner(publish: dict[str, Any]) -> None:
    _, job = matrix_job(publish)
    assert re.fullmatch(r"\$\{\{ vars\.GPU_RUNNER_LABEL \|\| '[\w-]+' \}\}", job["runs-on"])
    command = 'make site ARGS="--profile gpu --posts ${SLUG} --no-render"'
    runs = [s.get("run") for s in steps(job)]
    assert command in runs
    install = "make setup && .venv/bin/python -m pip install --quiet -r requirements-gpu.txt"
    assert install in runs and runs.index(install) < runs.index(command), "numba's CUDA target first"
    assert re.search(r"^numba-cuda\[cu13\]==[\d.]+$", (ROOT / "requirements-gpu.txt").read_text(), re.M)
    [cache] = [s for s in steps(job) if uses(s) == "actions/cache"]
    assert cache["with"]["path"] == "${{ env.HF_HOME }}" and job["env"]["HF_HOME"]
    assert "matrix.slug" in cache["with"]["key"], "one cache per post: parallel jobs must not race"
    [upload] = [s for s in steps(job) if uses(s) == "actions/upload-artifact"]
    assert upload["with"]["path"] == "_build/posts/${{ matrix.slug }}/"
    assert upload["with"]["name"] == "executed-${{ matrix.slug }}"
    for name, other in publish["jobs"].items():
        if other is not job:
            assert "vars." not in str(other["runs-on"]), f"only the post jobs use the GPU runner, not {name}"


def test_ci_runs_make_test_and_keeps_the_notebooks(ci: dict[str, Any]) -> None:
    [job] = ci["jobs"].values()
    assert not str(job["runs-on"]).startswith("${{"), "CI runs on a GitHub-hosted CPU runner"
    assert "make test" in [s.get("run") for s in steps(job)]
    [upload] = [s for s in steps(job) if uses(s) == "actions/upload-artifact"]
    assert upload["with"]["path"] == "_build/posts/" and upload["if"] == "${{ !cancelled() }}"


def test_every_job_has_a_time_limit(ci: dict[str, Any], publish: dict[str, Any]) -> None:
    for workflow in (ci, publish):
        for name, job in workflow["jobs"].items():
            assert 0 < job["timeout-minutes"] <= 360, name
