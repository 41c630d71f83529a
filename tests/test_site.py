"""Static checks of the site: settings behind citations and feeds, and every post's anatomy."""

from __future__ import annotations

import ast
import datetime as dt
import re
import shutil

import pytest
import yaml

from fromscratch.site import checks, notebook, scaffold
from fromscratch.site.params import check_value
from fromscratch.site.runinfo import PROFILES
from site_paths import POSTS, ROOT, post_notebook

QUARTO = yaml.safe_load((ROOT / "_quarto.yml").read_text())
POST_DEFAULTS = yaml.safe_load((ROOT / "posts" / "_metadata.yml").read_text())
BIB_KEYS = notebook.bib_keys((ROOT / "references.bib").read_text())


def all_keys(data) -> set[str]:
    """Every mapping key anywhere in a YAML document."""
    if isinstance(data, dict):
        return set(data) | set().union(*(all_keys(v) for v in data.values()))
    if isinstance(data, list):
        return set().union(*(all_keys(v) for v in data)) if data else set()
    return set()


def test_site_settings_for_readers_and_feeds() -> None:
    website = QUARTO["website"]
    assert website["site-url"].startswith("https://") and website["repo-url"].startswith("https://")
    assert website["description"] and website["open-graph"] and website["twitter-card"]
    assert website["search"] is True
    hrefs = [item if isinstance(item, str) else item["href"] for item in website["navbar"]["right"]]
    assert "about.qmd" in hrefs and website["repo-url"] in hrefs
    html = QUARTO["format"]["html"]
    assert set(html["theme"]) == {"light", "dark"}
    assert html["html-math-method"] == "mathjax"
    assert html["code-tools"]["source"] == "repo"
    assert QUARTO["bibliography"] == "references.bib"
    assert QUARTO["language"]["section-title-citation"] == "Cite this post"


def test_listing_is_newest_first_with_categories_and_feed() -> None:
    front = yaml.safe_load((ROOT / "index.qmd").read_text().split("---")[1])
    listing = front["listing"]
    assert listing["contents"] == "posts" and listing["sort"] == "date desc"
    assert listing["categories"] is True and "feed" in listing
    assert {"image", "description", "reading-time"} <= set(listing["fields"])


def test_post_defaults_make_zotero_save_a_blog_post() -> None:
    assert POST_DEFAULTS["google-scholar"] is True
    assert POST_DEFAULTS["citation"]["type"] == "post-weblog"
    assert POST_DEFAULTS["execute"]["enabled"] is False
    header = POST_DEFAULTS["format"]["html"]["include-in-header"]["text"]
    assert '<meta name="z.itemType" content="blogPost">' in header
    (author,) = POST_DEFAULTS["author"]
    assert isinstance(author["name"], str) and len(author["name"].split()) == 1, \
        "one word, so no reader splits it into a fake first and last name"


def test_author_lives_in_one_place() -> None:
    for slug in POSTS:
        assert "author" not in notebook.front_matter(post_notebook(slug)), slug


def csl_render(items: list[dict], text: str = "") -> str:
    """Plain text of `text` and a bibliography of CSL-JSON `items` plus references.bib, in the
    site's citation style, as Pandoc's citeproc (the one Quarto runs) writes them."""
    import json as json_module
    import tempfile

    import pypandoc

    with tempfile.TemporaryDirectory() as folder:
        items_file = f"{folder}/items.json"
        with open(items_file, "w") as handle:
            json_module.dump(items, handle)
        document = (f"---\nbibliography: [{items_file}, {ROOT / 'references.bib'}]\n"
                    f"csl: {ROOT / QUARTO['csl']}\nnocite: '@*'\n---\n{text}\n")
        return pypandoc.convert_text(document, "plain", format="markdown",
                                     extra_args=["--citeproc", "--wrap=none"])


def test_cite_this_post_reads_as_a_blog_post() -> None:
    """The cite line Quarto builds from a post's metadata, in the site's style: no 'accepted'."""
    url = f"{QUARTO['website']['site-url']}/posts/einsum/"
    post = {"id": "post", "type": "post-weblog", "title": "Einsum", "URL": url,
            "author": [{"family": POST_DEFAULTS["author"][0]["name"]}],
            "issued": {"date-parts": [[2026, 11, 26]]}}
    line = next(p for p in csl_render([post]).split("\n\n") if url in p)
    blog = QUARTO["website"]["title"]
    assert line == f"{POST_DEFAULTS['author'][0]['name']}. 2026. “Einsum.” {blog} (blog), " \
                   f"November 26. {url}."
    assert "accepted" not in line


def test_csl_names_the_blog_as_the_site_does() -> None:
    csl = (ROOT / QUARTO["csl"]).read_text()
    assert f'<text value="{QUARTO["website"]["title"]}" font-style="italic"/>' in csl


def test_every_reference_renders_with_author_year_and_title() -> None:
    entries = [e for e in csl_render([], "").split("\n\n") if e.strip()]
    assert len(entries) == len(BIB_KEYS)
    for entry in entries:
        assert re.search(r"^[^.]+.*?\. (1[89]|20)\d\d[a-z]?\. \S", entry), entry
        assert "accepted" not in entry


def test_theme_passes_contrast_and_links_are_not_colour_only() -> None:
    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light = QUARTO["format"]["html"]["theme"]["light"]
    scss = (ROOT / light[1]).read_text()
    primary = re.search(r"^\$primary:\s*(#[0-9a-fA-F]{6});", scss, re.M)[1]
    assert (1.05) / (luminance(primary) + 0.05) >= 4.5, "white on the banner, links on white"
    assert re.search(r"^\$link-decoration:\s*underline;", scss, re.M)
    dark = (ROOT / QUARTO["format"]["html"]["theme"]["dark"][1]).read_text()
    assert re.search(r"^\$link-decoration:\s*underline;", dark, re.M)
    after_body = (ROOT / QUARTO["format"]["html"]["include-after-body"]).read_text()
    for fix in ("navbar-toggler", "callout-header", "quarto-appendix-citeas"):
        assert fix in after_body


def test_listing_headings_descend_in_order() -> None:
    """The listing's post titles are h3: an h2 must come between them and the page's h1."""
    text = (ROOT / "index.qmd").read_text()
    listing_id = yaml.safe_load(text.split("---")[1])["listing"]["id"]
    body = text.split("---", 2)[2]
    assert re.search(rf"^## .+\n(.|\n)*^::: \{{#{listing_id}\}}", body, re.M)


@pytest.mark.parametrize("path", ["_quarto.yml", "posts/_metadata.yml", "index.qmd", "about.qmd"])
def test_no_container_title_anywhere(path: str) -> None:
    """A container-title makes Quarto write citation_journal_title: Zotero then saves an article."""
    assert "container-title" not in (ROOT / path).read_text()


def test_every_cited_paper_is_complete() -> None:
    entries = re.split(r"\n(?=@)", (ROOT / "references.bib").read_text().strip())
    for entry in entries:
        assert re.search(r"\btitle\s*=", entry) and re.search(r"\byear\s*=", entry), entry[:60]


needs_posts = pytest.mark.skipif(not POSTS, reason="no posts yet")


@needs_posts
@pytest.mark.parametrize("slug", POSTS)
def test_committed_without_outputs(slug: str) -> None:
    assert not notebook.has_outputs(post_notebook(slug))


@needs_posts
@pytest.mark.parametrize("slug", POSTS)
def test_front_matter(slug: str) -> None:
    front = notebook.front_matter(post_notebook(slug))
    missing = [key for key in notebook.REQUIRED_FRONT_MATTER if not front.get(key)]
    assert not missing, f"front matter lacks {missing}"
    assert "container-title" not in all_keys(front)
    description = front["description"].strip()
    assert description.endswith(".") and description.count(". ") == 0, "one sentence"
    dt.date.fromisoformat(str(front["date"]))
    assert isinstance(front["categories"], list) and front["categories"]
    assert front["image"] == "thumbnail.png", "the run saves the listing image (plot.save_thumbnail)"


@needs_posts
@pytest.mark.parametrize("slug", POSTS)
def test_parameters_cell_and_gpu_profile(slug: str) -> None:
    params = notebook.parameters(post_notebook(slug))
    assert params.get("profile") == "cpu" and params.get("device") == "auto"
    gpu = yaml.safe_load((ROOT / "posts" / slug / "gpu.yml").read_text())
    assert isinstance(gpu, dict) and gpu.get("device") == "cuda"
    assert set(gpu) <= set(params), f"gpu.yml sets undeclared {set(gpu) - set(params)}"
    for name, value in gpu.items():
        check_value(value, params[name])  # the build refuses a value of another type
    assert gpu.get("profile", "gpu") in PROFILES


@needs_posts
@pytest.mark.parametrize("slug", POSTS)
def test_page_shows_every_parameter(slug: str) -> None:
    """RunInfo.start receives every parameter, so the page states what produced it."""
    nb = post_notebook(slug)
    params = notebook.parameters(nb)
    calls = [node for cell in nb.cells if cell.cell_type == "code"
             for node in ast.walk(ast.parse(cell.source))
             if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "start"
             and getattr(node.func, "value", None) is not None
             and getattr(node.func.value, "id", "") == "RunInfo"]
    assert len(calls) == 1, "exactly one RunInfo.start(...)"
    passed = [getattr(a, "id", None) for a in calls[0].args] + [k.arg for k in calls[0].keywords]
    assert set(params) <= set(passed), f"not shown on the page: {set(params) - set(passed)}"


@needs_posts
@pytest.mark.parametrize("slug", POSTS)
def test_shared_cells_match_site_settings(slug: str) -> None:
    """Run box, Colab cell and environment card are those _quarto.yml implies (scaffold sync)."""
    nb = post_notebook(slug)
    for tag, source in scaffold.expected_shared_cells(ROOT, slug).items():
        cells = scaffold.tagged(nb, tag)
        assert len(cells) == 1, f"one cell tagged {tag}"
        assert cells[0].source.endswith(source), f"{tag} drifted: run `scaffold sync`"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert scaffold.COLAB_TAG in code[0].metadata.get("tags", []), "Colab set-up runs first"
    assert scaffold.CARD_TAG in nb.cells[-1].metadata.get("tags", []), "the card ends the post"


@needs_posts
@pytest.mark.parametrize("slug", POSTS)
def test_no_control_characters(slug: str) -> None:
    """A backspace or form feed in a cell is a LaTeX backslash lost to a Python escape (\\beta)."""
    for index, cell in enumerate(post_notebook(slug).cells):
        bad = sorted({hex(ord(ch)) for ch in cell.source if ord(ch) < 32 and ch not in "\n\t"})
        assert not bad, f"cell {index} holds control characters {bad}"


@needs_posts
@pytest.mark.parametrize("slug", POSTS)
def test_citations_exist_and_images_have_alt(slug: str) -> None:
    nb = post_notebook(slug)
    assert notebook.cited_keys(nb) <= BIB_KEYS, notebook.cited_keys(nb) - BIB_KEYS
    assert not notebook.figures_without_alt(nb)


@needs_posts
@pytest.mark.parametrize("slug", POSTS)
def test_quarto_can_render_the_committed_notebook(slug: str) -> None:
    """Canonical nbformat, strict YAML options and front matter, citations Pandoc resolves."""
    path = ROOT / "posts" / slug / "index.ipynb"
    assert checks.notebook_problems(path, BIB_KEYS) == []


@needs_posts
@pytest.mark.parametrize("slug", POSTS)
def test_setup_stays_off_the_page(slug: str) -> None:
    """Before the first section: intro, run box, one statement of profile, device, parameters."""
    nb = post_notebook(slug)
    hidden = [c for c in nb.cells if c.cell_type == "code" and
              ({scaffold.COLAB_TAG, "parameters"} & set(c.metadata.get("tags", [])))]
    assert len(hidden) == 2
    assert all(notebook.cell_options(c.source).get("include") is False for c in hidden)
    starts = [c for c in nb.cells if c.cell_type == "code" and "RunInfo.start(" in c.source]
    assert notebook.cell_options(starts[0].source).get("echo") is False
    first_section = next(i for i, c in enumerate(nb.cells)
                         if c.cell_type == "markdown" and c.source.lstrip().startswith("#"))
    assert nb.cells.index(starts[0]) < first_section, "the run statement comes before the text"
    shown = [index for index, c in enumerate(nb.cells[:first_section]) if c.cell_type == "code"
             and c not in hidden and c not in starts
             and notebook.cell_options(c.source).get("include") is not False
             and notebook.cell_options(c.source).get("echo") is not False
             and notebook.cell_options(c.source).get("code-fold") is not True]
    assert not shown, f"cells {shown}: code open before the first section (fold or move it)"


@needs_posts
@pytest.mark.parametrize("slug", POSTS)
def test_figure_cells_decide_their_folding(slug: str) -> None:
    """Plotting code is folded unless the post says its code teaches (`code-fold: show`)."""
    for index, cell in enumerate(post_notebook(slug).cells):
        options = notebook.cell_options(cell.source) if cell.cell_type == "code" else {}
        if "fig-alt" in options:
            assert options.get("code-fold") in (True, "show"), f"cell {index}: set code-fold"


@pytest.mark.skipif(shutil.which("quarto") is None, reason="Quarto is not installed here")
def test_rendered_pages_carry_citation_tags(tmp_path) -> None:
    """Where Quarto exists: render the executed site and read each post's meta tags."""
    import subprocess
    import sys

    build = subprocess.run([sys.executable, "-m", "fromscratch.site.build", "--no-quarto-install"],
                           cwd=ROOT, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    for slug in POSTS:
        html = (ROOT / "_site" / "posts" / slug / "index.html").read_text()
        for tag in ('name="citation_title"', 'name="citation_author"',
                    'name="citation_publication_date"', 'name="citation_fulltext_html_url"',
                    'name="citation_abstract"', 'name="z.itemType" content="blogPost"',
                    'property="og:site_name"', 'property="og:image"'):
            assert tag in html, f"{slug}: {tag}"
        assert "citation_journal_title" not in html
