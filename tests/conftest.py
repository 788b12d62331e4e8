"""Shared test settings: a hypothesis profile without per-example deadlines (the machine is shared,
so wall time per example varies); select another with HYPOTHESIS_PROFILE."""

import os

from hypothesis import settings

settings.register_profile("crossmap", deadline=None, print_blob=True, derandomize=True, database=None)
settings.register_profile("thorough", deadline=None, print_blob=True, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "crossmap"))
