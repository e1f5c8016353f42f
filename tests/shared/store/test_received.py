"""Received mail in the analytics store (shared/store/received.py) on both adapters: chDB
in-process and the clickhouse-connect adapter over ClickHouse's HTTP interface — what the
API processes and replicas read, and what retention deletes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.store import received
from shared.store.chdb_store import ChdbStore
from shared.store.clickhouse import ClickHouseStore
from tests.support.clickhouse_http import ClickHouseHttp

pytestmark = pytest.mark.clickhouse
NOW = datetime.now(timezone.utc)


@pytest.fixture(params=["chdb", "clickhouse_server"])
async def store(request, tmp_path):
    if request.param == "chdb":
        store, stop = ChdbStore(tmp_path / "chdb"), (lambda: None)
    else:
        server = ClickHouseHttp(tmp_path / "chdb-server").start()
        store, stop = ClickHouseStore(server.url), server.stop
    await store.migrate()
    yield store
    await store.close()
    stop()


def message(i: int, service: str = "s") -> dict:
    return {"id": f"m{i}", "service_id": service, "workspace_id": "w", "from": "a@x.test", "to": ["b@y.test"],
            "subject": f"n{i}", "created_at": (NOW + timedelta(seconds=i)).isoformat(), "attachments": []}


async def test_pages_newest_first_by_id_cursors_scoped_by_service(store):
    for i in range(5):
        await received.save(store, message(i), {}, NOW + timedelta(days=1))
    await received.save(store, message(0), {}, NOW + timedelta(days=1))  # a retried message: still one
    await received.save(store, message(9, service="other"), {}, NOW + timedelta(days=1))
    first, more = await received.page(store, "s", 2)
    assert [m["id"] for m in first] == ["m4", "m3"] and more
    rest, more = await received.page(store, "s", 10, after="m3")
    assert [m["id"] for m in rest] == ["m2", "m1", "m0"] and not more
    newer, _ = await received.page(store, "s", 2, before="m1")
    assert [m["id"] for m in newer] == ["m3", "m2"]
    assert await received.page(store, "s", 2, after="m9") is None  # another service's id is no cursor
    assert await received.find(store, "other", "m1") is None


async def test_attachments_are_byte_identical_and_expire_with_their_message(store):
    blob = bytes(range(256)) * 400 + b"\x00tail"
    await received.save(store, message(1), {"a1": blob}, NOW + timedelta(days=1))
    await received.save(store, message(2), {"a2": b"later"}, NOW + timedelta(days=30))
    assert await received.attachment(store, "s", "m1", "a1") == blob
    assert await received.attachment(store, "other", "m1", "a1") is None
    await received.purge_expired(store, NOW + timedelta(days=2))
    assert await received.find(store, "s", "m1") is None and await received.attachment(store, "s", "m1", "a1") is None
    assert (await received.find(store, "s", "m2"))["subject"] == "n2"
    assert await received.attachment(store, "s", "m2", "a2") == b"later"
