"""Session-wide real parts: the tansu broker is started once and shared."""
from __future__ import annotations

import pytest

from tests.support.broker import Tansu


@pytest.fixture(scope="session")
def tansu(tmp_path_factory):
    broker = Tansu(tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield broker
    broker.stop()
