"""What a test does when a piece it needs (a browser, triton) is missing: skip, naming the piece;
under ``CI=true`` (``.ci/run`` sets it) fail instead, so a CI machine that lacks the piece cannot
pass by running nothing."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def skip_or_fail_in_ci(reason: str) -> NoReturn:
    """Skip the calling test with ``reason``; with ``CI=true`` in the environment, fail with it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing test dependency is a failure, not a skip)")
    pytest.skip(reason)
