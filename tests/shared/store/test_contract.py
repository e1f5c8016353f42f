"""One contract suite for every analytics-store adapter: chDB in-process, and the
clickhouse-connect adapter over ClickHouse's HTTP interface (tests/support/clickhouse_http.py).

``StoreContract`` holds the tests; each adapter's thin subclass says how to open it and
how to make it unreachable (the pattern of eventsourcing's per-adapter test subclasses)."""
from __future__ import annotations

import asyncio
import socket
import threading
from datetime import datetime, timezone

import pytest

from shared.store.chdb_store import CACHE_LIMITS, ChdbStore
from shared.store.clickhouse import ClickHouseStore
from shared.store.migrations import MIGRATIONS
from shared.store.port import StoreError, StoreUnavailable
from tests.support.broker import free_port
from tests.support.clickhouse_http import ClickHouseHttp

pytestmark = pytest.mark.clickhouse
NOW = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.000")  # the table has a 30-day TTL


def attempt(i: int, outcome: str = "delivered") -> dict:
    return {"attempt_id": f"a{i}", "time": NOW, "workspace_id": "w", "service_id": "s",
            "webhook_id": "wh", "event_id": f"e{i}", "event_type": "delivered", "attempt": 1,
            "status_code": 200, "latency_ms": 1.5, "outcome": outcome, "error": ""}


class StoreContract:
    """The tests every adapter must pass; subclasses implement the hooks below."""

    def open_store(self, tmp_path):
        """A migrated-to-be store over the test's own data; returned with a cleanup."""
        raise NotImplementedError

    def unreachable_store(self, tmp_path):
        """A store whose server or data path cannot be reached."""
        raise NotImplementedError

    @pytest.fixture
    async def store(self, tmp_path):
        store, cleanup = self.open_store(tmp_path)
        assert await store.migrate() == max(m[0] for m in MIGRATIONS)
        yield store
        await store.close()
        cleanup()

    async def test_migrate_is_idempotent(self, store):
        assert await store.migrate() == max(m[0] for m in MIGRATIONS)
        rows = await store.query("SELECT count() AS n FROM postline.schema_migrations")
        assert int(rows[0]["n"]) == len(MIGRATIONS)

    async def test_insert_then_query_with_typed_parameters(self, store):
        await store.insert("webhook_attempts", [attempt(1), attempt(2, "retrying")], "batch-1")
        rows = await store.query("SELECT attempt_id, outcome FROM postline.webhook_attempts FINAL "
                                 "WHERE webhook_id = {w:String} AND outcome IN {o:Array(String)} ORDER BY attempt_id",
                                 {"w": "wh", "o": ["delivered", "retrying"]})
        assert rows == [{"attempt_id": "a1", "outcome": "delivered"}, {"attempt_id": "a2", "outcome": "retrying"}]

    async def test_reinserting_a_batch_does_not_duplicate_rows(self, store):
        batch = [attempt(i) for i in range(5)]
        await store.insert("webhook_attempts", batch, "same-token")
        await store.insert("webhook_attempts", batch, "same-token")  # an at-least-once redelivery
        rows = await store.query("SELECT count() AS n FROM postline.webhook_attempts FINAL")
        assert int(rows[0]["n"]) == 5

    async def test_an_empty_insert_is_a_no_op(self, store):
        await store.insert("webhook_attempts", [], "empty")
        assert await store.query("SELECT attempt_id FROM postline.webhook_attempts") == []

    async def test_a_refused_statement_raises_store_error(self, store):
        with pytest.raises(StoreError) as refused:
            await store.query("SELECT nope FROM postline.no_such_table")
        assert not isinstance(refused.value, StoreUnavailable)  # a bug, not an outage: not worth retrying
        with pytest.raises(StoreError):
            await store.insert("no_such_table", [{"a": 1}], "t")
        with pytest.raises(StoreError):
            await store.execute("CREATE TABLEE x")

    async def test_ping_answers_when_the_store_does(self, store):
        assert await store.ping() is None

    async def test_an_unreachable_store_raises_store_unavailable(self, tmp_path):
        store = self.unreachable_store(tmp_path)
        with pytest.raises(StoreUnavailable):
            await store.query("SELECT 1 AS ok")
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.insert("events", [{"event_id": "x"}], "t")
        await store.close()


class TestChdbStore(StoreContract):
    def open_store(self, tmp_path):
        return ChdbStore(tmp_path / "chdb"), lambda: None

    def unreachable_store(self, tmp_path):
        (tmp_path / "a-file").write_text("not a directory")
        return ChdbStore(tmp_path / "a-file" / "chdb")

    async def test_the_engine_runs_with_bounded_caches(self, store):
        rows = await store.query("SELECT name, toUInt64(value) AS v FROM system.server_settings "
                                 "WHERE name IN {names:Array(String)}", {"names": list(CACHE_LIMITS)})
        assert {r["name"]: int(r["v"]) for r in rows} == CACHE_LIMITS


class TestClickHouseStore(StoreContract):
    def open_store(self, tmp_path):
        server = ClickHouseHttp(tmp_path / "chdb-server").start()
        return ClickHouseStore(server.url), server.stop

    def unreachable_store(self, tmp_path):
        return ClickHouseStore(f"http://127.0.0.1:{free_port()}")  # nothing listens there

    async def test_a_ping_a_server_never_answers_ends_with_its_deadline(self, tmp_path):
        """A server that takes the connection and never answers: the caller's deadline cancels the
        ping outright, no driver thread left waiting."""
        with socket.socket() as hole:
            hole.bind(("127.0.0.1", 0))
            hole.listen(8)
            store = ClickHouseStore(f"http://127.0.0.1:{hole.getsockname()[1]}")
            threads = threading.active_count()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(store.ping(), 0.5)
            assert threading.active_count() == threads
            await store.close()
