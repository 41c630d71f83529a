"""Build the site: execute every post with papermill into _build/, then render it with Quarto.

    python -m fromscratch.site.build [--profile cpu|gpu] [--posts SLUG ...] [--param NAME=VALUE]

The committed notebooks are never modified. One failing post does not stop the others; the
build then names each failure and exits non-zero, leaving the previous _site/ untouched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fromscratch.site import checks, notebook
from fromscratch.site.params import ParameterError, check_value, parse_value
from fromscratch.site.runinfo import PROFILES

KERNEL = "fromscratch"
BUILD_DIR = "_build"
SITE_DIR = "_site"
SITE_FOLDERS = ("posts", "assets")  # besides the root's own pages and settings
SITE_FILE_SUFFIXES = (".qmd", ".yml", ".yaml", ".bib", ".csl", ".css", ".scss", ".svg", ".png",
                      ".ico")
QUARTO_HELP = "install it from https://quarto.org/docs/get-started/ or with `pip install quarto-cli`"


class BuildError(Exception):
    """A bad request (unknown post, profile or parameter): reported in one line, exit 2."""


class PostError(Exception):
    """A post that cannot be executed as committed (unreadable notebook, bad gpu.yml): it fails
    alone, in one line, and the other posts still run."""


@dataclass
class PostResult:
    """How the execution of one post went."""

    slug: str
    status: str = "not run"
    seconds: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def find_root(start: Path | None = None) -> Path:
    """The site root: the nearest folder at or above `start` holding _quarto.yml."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "_quarto.yml").exists():
            return folder
    raise BuildError(f"no _quarto.yml in {start} or above; run from the repository or pass --root")


def site_root(root: Path | None) -> Path:
    """The `--root` given on the command line, checked to be a site, else the one found from cwd."""
    if root is None:
        return find_root()
    if not root.is_dir():
        raise BuildError(f"--root {root}: no such folder")
    if not (root / "_quarto.yml").exists():
        raise BuildError(f"--root {root} is not a site: it has no _quarto.yml")
    return root.resolve()


def list_posts(root: Path) -> list[str]:
    """Slugs of the posts: folders of posts/ holding an index.ipynb."""
    return sorted(p.parent.name for p in (root / "posts").glob("*/index.ipynb"))


def select_posts(root: Path, requested: list[str] | None) -> list[str]:
    """The requested slugs (all posts by default), each checked to exist."""
    available = list_posts(root)
    unknown = [slug for slug in requested or [] if slug not in available]
    if unknown:
        raise BuildError(f"unknown post {', '.join(map(repr, unknown))}; "
                         f"posts: {', '.join(available) or '(none)'}")
    return list(requested) if requested else available


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """NAME=VALUE pairs from the command line, as text; each post reads them as its own types."""
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise BuildError(f"bad --param {pair!r}; write NAME=VALUE, e.g. --param steps=10")
        if name == "profile":
            raise BuildError("--param profile=... would mislabel the page; choose the profile "
                             "with --profile")
        overrides[name] = value
    return overrides


def declared_parameters(root: Path, slug: str) -> dict[str, Any]:
    """The post's parameters cell: names and default values."""
    try:
        return notebook.parameters(notebook.read(root / "posts" / slug / "index.ipynb"))
    except ValueError as error:
        raise PostError(f"post {slug!r}: {error}") from error


def gpu_parameters(root: Path, slug: str) -> dict[str, Any]:
    """The post's gpu.yml: a mapping of parameter names to values."""
    gpu_file = root / "posts" / slug / "gpu.yml"
    if not gpu_file.exists():
        raise BuildError(f"post {slug!r} has no gpu.yml, which the gpu profile reads")
    try:
        values = yaml.safe_load(gpu_file.read_text())
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise PostError(f"post {slug!r}: gpu.yml is not valid YAML{line}: "
                        f"{getattr(error, 'problem', None) or error}") from error
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise PostError(f"post {slug!r}: gpu.yml must map parameter names to values, "
                        f"not hold a {type(values).__name__}")
    if values.get("profile", "gpu") != "gpu":
        raise PostError(f"post {slug!r}: gpu.yml sets profile to {values['profile']!r}")
    return values


def post_parameters(root: Path, slug: str, profile: str, overrides: dict[str, str]
                    ) -> dict[str, Any]:
    """Parameters papermill injects: the profile's file (gpu.yml), then command-line overrides,
    each checked against the type of the declared default."""
    if profile not in PROFILES:
        raise BuildError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    declared = declared_parameters(root, slug)
    undeclared = sorted(set(overrides) - set(declared))
    if undeclared:
        raise BuildError(f"post {slug!r} has no parameter {', '.join(map(repr, undeclared))}; "
                         f"its parameters: {', '.join(declared)}")
    params: dict[str, Any] = {}
    if profile == "gpu":
        for name, value in gpu_parameters(root, slug).items():
            if name not in declared:
                raise PostError(f"post {slug!r}: gpu.yml sets {name!r}, which the parameters "
                                f"cell does not declare; its parameters: {', '.join(declared)}")
            try:
                params[name] = check_value(value, declared[name])
            except ParameterError as error:
                raise PostError(f"post {slug!r}: gpu.yml {name}: {error}") from error
        params["profile"] = "gpu"
    for name, text in overrides.items():
        try:
            params[name] = parse_value(text, declared[name])
        except ParameterError as error:
            raise BuildError(f"--param {name}={text} for post {slug!r}: {error} (the declared "
                             f"default is {declared[name]!r})") from error
    return params


def source_digest(path: Path) -> str:
    """sha256 of a committed notebook, stamped on its executed copy to detect staleness."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_site_sources(root: Path, build: Path) -> None:
    """Refresh _build/ from the site sources, keeping executed notebooks of unchanged posts and
    dropping those of posts that no longer exist."""
    build.mkdir(exist_ok=True)
    for entry in root.iterdir():
        if entry.is_file() and entry.suffix in SITE_FILE_SUFFIXES:
            shutil.copy2(entry, build / entry.name)
        elif entry.is_dir() and entry.name in SITE_FOLDERS:
            shutil.copytree(entry, build / entry.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("index.ipynb", ".ipynb_checkpoints"))
    slugs = list_posts(root)
    for leftover in (build / "posts").glob("*/index.ipynb"):
        if leftover.parent.name not in slugs:
            shutil.rmtree(leftover.parent)
    for slug in slugs:
        source, executed = root / "posts" / slug / "index.ipynb", build / "posts" / slug
        if executed_stamp(executed / "index.ipynb", source) is None:
            shutil.copy2(source, executed / "index.ipynb")


def executed_stamp(executed: Path, source: Path) -> dict[str, Any] | None:
    """The build's stamp on an executed notebook if it ran the current source successfully."""
    if not executed.exists():
        return None
    try:
        stamp = notebook.read(executed).metadata.get("fromscratch", {})
    except ValueError:  # a broken leftover is as good as none
        return None
    ok = stamp.get("status") == "ok" and stamp.get("source_sha256") == source_digest(source)
    return stamp if ok else None


def kernel_name() -> str:
    """The Jupyter kernel registered for this environment by `make site`, else python3."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def ipc_kernel_manager() -> type:
    """A kernel manager that talks to the kernel over local IPC sockets, not unencrypted TCP."""
    import tempfile

    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(Path(tempfile.mkdtemp(prefix="fromscratch-kernel-"))
                                        / "kernel"))
            super().__init__(**kwargs)

    return IPCKernelManager


def finish_executed(output: Path, source: Path, result: PostResult, profile: str) -> None:
    """Hide papermill's injected cell, stamp the run, write canonical nbformat, check for Quarto."""
    executed = notebook.read(output)
    for cell in executed.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = "#| include: false\n" + cell.source.removeprefix("#| include: false\n")
    if result.status == "ok":
        problems = checks.executed_problems(executed, checks.site_bib_keys(source.parents[2]))
        if problems:
            result.status, result.error = "failed", "Quarto would break the page: " + problems[0]
    executed.metadata["fromscratch"] = {"profile": profile, "status": result.status,
                                        "seconds": round(result.seconds, 1),
                                        "parameters": result.parameters,
                                        "source_sha256": source_digest(source)}
    notebook.write_canonical(executed, output)


def execute_post(root: Path, build: Path, slug: str, params: dict[str, Any], profile: str
                 ) -> PostResult:
    """Run one post with papermill into _build/posts/<slug>/index.ipynb and stamp the result."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = root / "posts" / slug / "index.ipynb"
    output = build / "posts" / slug / "index.ipynb"
    result = PostResult(slug, parameters=params)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(source), str(output), parameters=params,
                                   kernel_name=kernel_name(), cwd=str(output.parent),
                                   progress_bar=False, report_mode=False,
                                   kernel_manager_class=ipc_kernel_manager())
        result.status = "ok"
    except PapermillExecutionError as error:
        result.status = "failed"
        result.error = f"cell {error.cell_index}: {error.ename}: {error.evalue}"
    except Exception as error:  # a kernel that dies, a notebook that cannot be read...
        result.status = "failed"
        result.error = f"{type(error).__name__}: {error}"
    result.seconds = time.perf_counter() - start
    if output.exists():
        try:
            finish_executed(output, source, result, profile)
        except ValueError as error:  # an output papermill could not write whole
            result.status, result.error = "failed", str(error)
    return result


def report(results: list[PostResult]) -> str:
    """The table of posts with their status and execution time."""
    width = max([len(r.slug) for r in results] + [4])
    lines = [f"{'post':<{width}}  {'status':<7}  {'seconds':>8}", "-" * (width + 19)]
    lines += [f"{r.slug:<{width}}  {r.status:<7}  {r.seconds:8.1f}" for r in results]
    return "\n".join(lines)


def find_quarto(try_install: bool) -> str | None:
    """The quarto executable; optionally try `pip install quarto-cli` first (needs internet)."""
    found = shutil.which("quarto") or shutil.which("quarto", path=str(Path(sys.executable).parent))
    if found or not try_install:
        return found
    print("quarto not found; trying `pip install quarto-cli` ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "quarto-cli"],
                       capture_output=True, timeout=300, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    return shutil.which("quarto", path=str(Path(sys.executable).parent))


def render(root: Path, build: Path, quarto: str) -> None:
    """Render _build/ into a fresh folder, then swap it in for _site/ only if rendering worked."""
    fresh, old = root / f"{SITE_DIR}.new", root / f"{SITE_DIR}.old"
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    done = subprocess.run([quarto, "render", str(build), "--output-dir", str(fresh)])
    if done.returncode != 0 or not fresh.exists():
        shutil.rmtree(fresh, ignore_errors=True)
        raise RuntimeError(f"quarto render failed (exit {done.returncode}); {SITE_DIR}/ is "
                           "unchanged")
    site = root / SITE_DIR
    if site.exists():
        site.rename(old)
    fresh.rename(site)
    shutil.rmtree(old, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fromscratch.site.build",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu",
                        help="cpu: each post's own defaults; gpu: each post's gpu.yml")
    parser.add_argument("--posts", nargs="+", metavar="SLUG", help="execute only these posts")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a parameter of every selected post")
    parser.add_argument("--root", type=Path, help="site root (default: found from the cwd)")
    parser.add_argument("--render-only", action="store_true",
                        help="render the executed notebooks already in _build/")
    parser.add_argument("--no-render", action="store_true", help="execute, do not render")
    parser.add_argument("--no-quarto-install", action="store_true",
                        help="do not try `pip install quarto-cli` when quarto is missing")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> int:
    """Execute the selected posts, print the report, render when all is well; the exit code."""
    root = site_root(args.root)
    slugs = select_posts(root, args.posts)
    overrides = parse_overrides(args.param)
    plan, results = {}, []
    for slug in slugs:
        try:
            plan[slug] = post_parameters(root, slug, args.profile, overrides)
        except PostError as error:  # this post fails alone; the others still run
            results.append(PostResult(slug, status="failed", error=str(error)))
    build_dir = root / BUILD_DIR
    if args.profile == "cpu":  # the default profile runs on what ships: never wait on the hub
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    copy_site_sources(root, build_dir)
    if not args.render_only:
        for slug, params in plan.items():
            print(f"executing {slug} ({args.profile}) ...", flush=True)
            results.append(execute_post(root, build_dir, slug, params, args.profile))
        results.sort(key=lambda r: slugs.index(r.slug))
        print(report(results))
        (build_dir / "build-report.json").write_text(
            json.dumps([asdict(r) for r in results], indent=1) + "\n")
    failed = [r for r in results if r.status != "ok"]
    if failed:
        for r in failed:
            where = (f" (executed notebook: {build_dir / 'posts' / r.slug / 'index.ipynb'})"
                     if r.seconds else " (not executed)")
            print(f"FAILED {r.slug}: {r.error}{where}", file=sys.stderr)
        print(f"{len(failed)} of {len(results)} posts failed; {SITE_DIR}/ left as it was",
              file=sys.stderr)
        return 1
    if args.no_render:
        return 0
    stale = [s for s in list_posts(root) if executed_stamp(
        build_dir / "posts" / s / "index.ipynb", root / "posts" / s / "index.ipynb") is None]
    if stale:
        print(f"rendering skipped: {', '.join(stale)} not executed from the current source; "
              f"build all posts (or collect their executed notebooks in {BUILD_DIR}/posts/)")
        return 0 if not args.render_only else 1
    quarto = find_quarto(try_install=not args.no_quarto_install)
    if quarto is None:
        print(f"rendering skipped: Quarto is not installed ({QUARTO_HELP}); the executed "
              f"notebooks are in {build_dir / 'posts'}")
        return 0
    try:
        render(root, build_dir, quarto)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"site rendered to {root / SITE_DIR}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return build(args)
    except (BuildError, ValueError) as error:
        print(f"build: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    sys.exit(main())
