"""Session-wide real parts: the tansu broker is started once and shared."""
from __future__ import annotations

import pytest

from tests.support.broker import Tansu


@pytest.fixture(scope="session")
def tansu(tmp_path_factory):
    broker = Tansu(tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def browser():
    """A headless chromium per test module (Playwright's sync API). Module scope on purpose:
    while it is open, Playwright keeps an event loop running on the main thread, which
    breaks the async tests that run after it."""
    from playwright.sync_api import sync_playwright

    from tests.support.browser import launch

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()
