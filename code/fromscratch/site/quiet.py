"""Keep library chatter (loading bars, notices, widget warnings) off a post's page."""

from __future__ import annotations

import warnings

# tqdm warns "IProgress not found" when it is first imported in a notebook without widgets. Every post
# imports this module first (through `from fromscratch.site import RunInfo`), before any library
# that imports tqdm, so the filter is in place in time.
warnings.filterwarnings("ignore", message="IProgress not found")


def quiet_libraries() -> None:
    """Silence diffusers', transformers' and huggingface_hub's progress bars and notices below errors.

    Errors still show.
    """
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()
    disable_progress_bars()
