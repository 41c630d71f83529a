"""The site machinery: read posts, execute them with papermill, render them, describe each run."""

from fromscratch.site.quiet import quiet_libraries
from fromscratch.site.runinfo import RunInfo

__all__ = ["RunInfo", "quiet_libraries"]
