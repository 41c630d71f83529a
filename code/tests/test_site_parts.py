"""The pieces the build relies on: device choice, run info, notebook readers, scaffolding."""

from pathlib import Path

import nbformat
import pytest
import torch

from fromscratch.device import resolve_device, set_cpu_threads
from fromscratch.site import notebook, scaffold
from fromscratch.site.runinfo import RunInfo

v4 = nbformat.v4


def test_auto_device_follows_cuda_availability() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU is visible; use device='auto'"):
        resolve_device("cuda")


def test_cpu_threads_pins_torch_or_keeps_its_default() -> None:
    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(1) == 1 == torch.get_num_threads()
        assert set_cpu_threads(0) == 1  # 0 leaves the pool as it is
    finally:
        torch.set_num_threads(before)
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive count"):
            set_cpu_threads(bad)


def test_run_info_shows_profile_and_parameters(capsys) -> None:
    run = RunInfo.start("cpu", "cpu", steps=3)
    markdown = run._repr_markdown_()
    assert "**cpu** profile" in markdown and "`steps = 3`" in markdown
    assert markdown.count("\n") == 1, "one compact paragraph, not a table"
    run.card()
    card = capsys.readouterr().out
    assert "torch" in card and "wall time" in card and "profile" in card
    with pytest.raises(ValueError, match="unknown profile 'laptop'"):
        RunInfo.start("laptop")


def test_notebook_readers() -> None:
    nb = v4.new_notebook(cells=[
        v4.new_raw_cell("---\ntitle: T\ndescription: One sentence.\n---"),
        v4.new_markdown_cell("As shown by [@ho2020denoising; @song2021denoising], not `x@y`.\n"
                             "![](plot.png) and ![a chart](chart.png)"),
        v4.new_code_cell("steps = 10\nname: str = 'x'", metadata={"tags": ["parameters"]}),
        v4.new_code_cell("#| fig-alt: a line\nplt.plot()", outputs=[
            nbformat.from_dict({"output_type": "display_data", "data": {"image/png": ""},
                                "metadata": {}})]),
        v4.new_code_cell("plt.plot()", outputs=[
            nbformat.from_dict({"output_type": "display_data", "data": {"image/png": ""},
                                "metadata": {}})]),
    ])
    assert notebook.front_matter(nb)["title"] == "T"
    assert notebook.parameters(nb) == {"steps": 10, "name": "x"}
    assert notebook.cited_keys(nb) == {"ho2020denoising", "song2021denoising"}
    assert notebook.figures_without_alt(nb) == [
        "cell 1: markdown image plot.png", "cell 4: figure output without '#| fig-alt:'"]
    assert notebook.has_outputs(nb)
    assert notebook.bib_keys("@article{a1,\n title={x}}\n@misc{ b2 ,") == {"a1", "b2"}


def test_front_matter_must_come_first() -> None:
    with pytest.raises(ValueError, match="first cell must be a raw cell"):
        notebook.front_matter(v4.new_notebook(cells=[v4.new_markdown_cell("# hi")]))


def test_scaffolded_post_is_complete_and_clean(tmp_path: Path) -> None:
    (tmp_path / "_quarto.yml").write_text(
        "website:\n  repo-url: https://github.com/owner/blog\n")
    path = scaffold.new_post(tmp_path, "my-post", "My post")
    nb = notebook.read(path)
    assert not notebook.has_outputs(nb)
    assert set(notebook.parameters(nb)) == {"profile", "device"}
    box = scaffold.tagged(nb, scaffold.RUN_BOX_TAG)[0].source
    assert "git clone https://github.com/owner/blog && cd blog" in box
    assert "colab.research.google.com/github/owner/blog/blob/main/posts/my-post/index.ipynb" in box
    assert scaffold.sync(tmp_path) == []
    (tmp_path / "_quarto.yml").write_text("website:\n  repo-url: https://github.com/new/place\n")
    assert scaffold.sync(tmp_path) == ["my-post"]
    assert "github.com/new/place" in scaffold.tagged(notebook.read(path), scaffold.COLAB_TAG)[0].source


def test_source_markdown_unwraps_numba_dispatchers() -> None:
    import numba

    from fromscratch.site.show import source_markdown

    @numba.njit
    def twice(x):
        return 2 * x

    text = source_markdown(twice)
    assert text.startswith("```python\n") and text.endswith("\n```")
    assert "def twice(x):" in text and "return 2 * x" in text


def test_quiet_libraries_silences_loading_bars_and_notices():
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as transformers_logging

    from fromscratch.site.quiet import quiet_libraries

    try:
        quiet_libraries()
        for library in (diffusers_logging, transformers_logging):
            assert library.get_verbosity() == library.ERROR
            assert not library.is_progress_bar_enabled()
        assert are_progress_bars_disabled()
    finally:
        for library in (diffusers_logging, transformers_logging):
            library.set_verbosity_warning()
            library.enable_progress_bar()
        from huggingface_hub.utils import enable_progress_bars
        enable_progress_bars()


def test_figure_text_is_never_smaller_than_a_caption_on_the_page() -> None:
    import matplotlib.pyplot as plt

    from fromscratch.plot import MIN_TEXT_PX, PAGE_WIDTH_PX, readable_text

    fig, axes = plt.subplots(1, 8, figsize=(11.2, 1.6))
    for index, ax in enumerate(axes):
        ax.set_title(f"s = {index}", fontsize=7)
    big = fig.suptitle("already large", fontsize=30)
    readable_text(fig)
    page_scale = min(1.0, PAGE_WIDTH_PX / (fig.get_figwidth() * fig.dpi))
    for ax in axes:
        shown_px = ax.title.get_fontsize() * fig.dpi / 72 * page_scale
        assert shown_px >= MIN_TEXT_PX - 1e-9
    assert big.get_fontsize() == 30
    plt.close(fig)
