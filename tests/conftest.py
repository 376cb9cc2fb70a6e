"""Shared test settings.

In CI (CI=true) hypothesis runs derandomized, so a red build is reproducible and
never depends on luck; on a developer's machine it keeps exploring new examples.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
