"""The analytics store on both adapters, for the store tests that are not the contract suite."""
from __future__ import annotations

import pytest

from shared.store.chdb_store import ChdbStore
from shared.store.clickhouse import ClickHouseStore
from tests.support.clickhouse_http import ClickHouseHttp


@pytest.fixture(params=["chdb", "clickhouse-server"])
async def bare_store(request, tmp_path):
    """An empty store (no migration run): embedded chDB, or the ClickHouse-HTTP adapter in
    front of a chDB-backed server."""
    server = None
    if request.param == "chdb":
        s = ChdbStore(tmp_path / "chdb")
    else:
        server = ClickHouseHttp(tmp_path / "chdb-server").start()
        s = ClickHouseStore(server.url)
    yield s
    await s.close()
    if server:
        server.stop()
