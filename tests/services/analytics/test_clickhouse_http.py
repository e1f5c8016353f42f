"""The analytics process's ClickHouse-HTTP server over chDB (services/analytics/clickhouse_http.py),
reached by the ordinary ClickHouse adapter as `postline all`'s other processes reach it:
parameters of any size (clickhouse-connect sends them as a multipart form past 4 KB), and
the password required."""
from __future__ import annotations

import socket

import pytest

from services.analytics.clickhouse_http import ChdbHttpServer
from shared.store.clickhouse import ClickHouseStore
from shared.store.port import StoreError, StoreRefused


@pytest.fixture
def server(tmp_path):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    srv = ChdbHttpServer(tmp_path / "chdb", sock, "postline", "s3cret").start()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    srv.stop()


@pytest.mark.parametrize("size", [10, 5_000, 200_000])
async def test_a_parameter_of_any_size_reaches_the_engine(server, size):
    store = ClickHouseStore(f"http://postline:s3cret@{server}")
    try:
        value = "a\\b'\t" * (size // 5)
        assert await store.query("SELECT length({v:String}) AS n, {v:String} = {w:String} AS same",
                                 {"v": value, "w": value}) == [{"n": len(value.encode()), "same": 1}]
    finally:
        await store.close()


async def test_a_wrong_password_is_refused(server):
    store = ClickHouseStore(f"http://postline:guess@{server}")
    try:
        with pytest.raises(StoreError):
            await store.query("SELECT 1 AS one")
        with pytest.raises(StoreRefused):  # the probes' ping sends the credentials too
            await store.ping()
    finally:
        await store.close()
    store = ClickHouseStore(f"http://postline:s3cret@{server}")
    try:
        assert await store.ping() is None
    finally:
        await store.close()
