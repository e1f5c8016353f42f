"""A real browser for tests: Debian's chromium driven by Playwright for Python.

Never ``playwright install`` (it downloads a browser build from outside the package
registries): the Makefile installs Debian's ``chromium`` and tests launch it by path."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot_dir() -> Path:
    """Where browser tests write their screenshots: docs/screenshots (checked in, linked from
    the README) when ``POSTLINE_UPDATE_SCREENSHOTS=1`` (``make screenshots``), else a
    temporary folder, so an ordinary test run leaves the work tree clean."""
    if os.environ.get("POSTLINE_UPDATE_SCREENSHOTS") == "1":
        folder = SCREENSHOTS
    else:
        folder = Path(tempfile.gettempdir()) / "postline-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def launch(playwright):
    """A headless chromium; the caller closes it."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
