"""The system Chromium the explorer's browser tests and ``benchmarks/explorer_load.py`` drive (through
Playwright's ``executable_path``): where it is, and the flags that keep it headless and offline."""

from __future__ import annotations

import os
import shutil

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """``$ROPELAB_CHROMIUM``, else the Debian package's ``/usr/bin/chromium``, else one on ``PATH``."""
    for candidate in (
        os.environ.get("ROPELAB_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.path.exists(candidate):
            return candidate
    return None
