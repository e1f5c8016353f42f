"""A real browser for tests: Debian's chromium driven by Playwright for Python.

Never ``playwright install`` (it downloads a browser build from outside the package
registries): the Makefile installs Debian's ``chromium`` and tests launch it by path."""
from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def launch(playwright):
    """A headless chromium; the caller closes it."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
