"""Session-wide real parts: the tansu broker is started once and shared."""
from __future__ import annotations

import os

import pytest

from tests.support.broker import Tansu

# `postline all` in tests runs every role in one process unless a test asks for workers: the
# suite shares 2 cores (tests/services/test_supervisor.py covers the supervised processes;
# test_readme's `make run` drops POSTLINE_* and so runs the product default). `make bench`
# does not load this file and measures the default.
os.environ.setdefault("POSTLINE_WORKERS", "1")


@pytest.fixture(scope="module")
def tansu(tmp_path_factory):
    """A tansu broker per test module (it starts in milliseconds). Not one per session: the
    processes of one module's tests join the same consumer groups ("relay", the retry
    forwarders) and leave topics full of their records; CI twice saw the relays of a later
    module consume nothing for minutes on a broker earlier modules had used (cause not found);
    a fresh broker per module keeps one module's leftovers from another's tests."""
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


@pytest.fixture
async def sqlite_log(tmp_path):
    """A started embedded log (4 partitions) in the test's own directory."""
    from shared.log.sqlite import SqliteLog

    lg = SqliteLog(tmp_path / "log.sqlite3", partitions=4)
    await lg.start()
    yield lg
    await lg.close()
