"""Hypothesis profiles for the property-based tests (code/tests/test_properties_*.py).

"default": a small, derandomized budget, so `make test` runs every Hypothesis suite in about 90 s on a
2-core machine and CI gives the same examples every run. "thorough": 20 times the examples, fresh random
draws each run; select it with HYPOTHESIS_PROFILE=thorough. Neither keeps an example database on disk.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 50
_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile("default", max_examples=DEFAULT_EXAMPLES, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=20 * DEFAULT_EXAMPLES, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
