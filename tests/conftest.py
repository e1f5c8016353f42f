"""Session-wide real parts: the tansu broker is started once and shared."""
from __future__ import annotations

import pytest

from tests.support.broker import Tansu


@pytest.fixture(scope="session")
def tansu(tmp_path_factory):
    broker = Tansu(tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def browser():
    """One headless chromium for the session (Playwright's sync API)."""
    from playwright.sync_api import sync_playwright

    from tests.support.browser import launch

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()
