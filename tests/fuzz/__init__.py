"""Fuzz tests: the OpenAPI schema (schemathesis), the event model and OpenLineage (hypothesis).

The suite draws the same examples on every run (derandomized), so CI is repeatable; set
COPLANE_FUZZ_RANDOM=1 to explore new ones, and COPLANE_FUZZ_EXAMPLES for more of them.
"""

import os

from hypothesis import settings

settings.register_profile("coplane", derandomize=os.environ.get("COPLANE_FUZZ_RANDOM") != "1")
settings.load_profile("coplane")
