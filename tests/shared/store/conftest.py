"""The analytics store on both adapters, for the store tests that are not the contract suite."""
from __future__ import annotations

import pytest

from tests.support.clickhouse_http import store_of_kind


@pytest.fixture(params=["chdb", "clickhouse-server"])
async def bare_store(request, tmp_path):
    """An empty store (no migration run): embedded chDB, or the ClickHouse-HTTP adapter in
    front of a chDB-backed server."""
    async with store_of_kind(request.param, tmp_path / "chdb") as store:
        yield store
