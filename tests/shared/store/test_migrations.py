"""Migrations that run more than once: the analytics replicas and the ``postline migrate`` Job
of an upgrade start together against one ClickHouse server, each running the steps it has
not seen recorded; and a crash can come between a step and its record. The rollups'
backfills (the history loaded before the rollups existed) must count that history once."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from shared.store import port
from shared.store.clickhouse import ClickHouseStore
from shared.store.migrations import MIGRATIONS
from tests.support.clickhouse_http import ClickHouseHttp

pytestmark = pytest.mark.clickhouse
BEFORE_ROLLUPS = 12  # the last version without the insight rollups (13–24)
HISTORY = 50         # events loaded before the upgrade


@pytest.fixture
def server(tmp_path):
    server = ClickHouseHttp(tmp_path / "chdb").start()
    yield server
    server.stop()


async def installation_with_history(url: str, monkeypatch) -> None:
    """A store at version 12 holding HISTORY delivered events, as an upgrade finds it."""
    store = ClickHouseStore(url)
    with monkeypatch.context() as m:
        m.setattr(port, "MIGRATIONS", [s for s in MIGRATIONS if s[0] <= BEFORE_ROLLUPS])
        assert await store.migrate() == BEFORE_ROLLUPS
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    rows = [{"event_id": f"e{i}", "type": "delivered", "time": hour.strftime("%Y-%m-%d %H:%M:%S.000"),
             "workspace_id": "w", "service_id": "s", "email_id": f"m{i}", "recipient": f"r{i}@example.com",
             "tags": [], "smtp_code": 250, "reason": "",
             "payload": f'{{"queued_at": "{(hour - timedelta(seconds=2)).isoformat()}"}}'} for i in range(HISTORY)]
    await store.insert("events", rows, "history")
    await store.close()


async def counted(url: str) -> tuple[int, int, int, int]:
    """Delivered events in the hourly and daily rollups, and in their latency rollups."""
    store = ClickHouseStore(url)
    try:
        out = []
        for table in ("event_rollup", "event_rollup_daily"):
            rows = await store.query(f"SELECT sum(n) AS n FROM postline.{table} WHERE dim = 'service' AND type = 'delivered'")
            out.append(int(rows[0]["n"]))
        for table in ("latency_rollup", "latency_rollup_daily"):
            out.append(int((await store.query(f"SELECT sum(n) AS n FROM postline.{table}"))[0]["n"]))
        return out[0], out[1], out[2], out[3]
    finally:
        await store.close()


async def test_replicas_migrating_at_once_backfill_the_history_once(server, monkeypatch):
    await installation_with_history(server.url, monkeypatch)
    replicas = [ClickHouseStore(server.url) for _ in range(3)]
    versions = await asyncio.gather(*(r.migrate() for r in replicas))
    for r in replicas:
        await r.close()
    assert versions == [MIGRATIONS[-1][0]] * 3
    assert await counted(server.url) == (HISTORY,) * 4


async def test_a_migrator_that_died_after_a_backfill_leaves_it_counted_once(server, monkeypatch):
    await installation_with_history(server.url, monkeypatch)
    dying = ClickHouseStore(server.url)
    record = dying.insert

    async def dies_recording_17(table, rows, token):
        if table == "schema_migrations" and rows == [{"version": 17}]:
            raise ConnectionError("killed")  # after the backfill and its claim's row, before its record
        await record(table, rows, token)

    monkeypatch.setattr(dying, "insert", dies_recording_17)
    with pytest.raises(ConnectionError):
        await dying.migrate()
    await dying.close()
    restarted = ClickHouseStore(server.url)
    assert await restarted.migrate() == MIGRATIONS[-1][0]
    recorded = {r["version"] for r in await restarted.query("SELECT version FROM postline.schema_migrations")}
    await restarted.close()
    assert recorded == {step[0] for step in MIGRATIONS}  # the backfill recorded, not run again
    assert await counted(server.url) == (HISTORY,) * 4


async def test_a_backfill_claimed_and_not_done_is_left_to_its_migrator(server, monkeypatch, caplog):
    await installation_with_history(server.url, monkeypatch)
    store = ClickHouseStore(server.url)
    await store.execute("CREATE TABLE postline._migration_claim_17 (done UInt8, at DateTime DEFAULT now()) "
                        "ENGINE = MergeTree ORDER BY tuple()")  # another migrator's, under way (or dead)
    assert await store.migrate() == MIGRATIONS[-1][0]
    recorded = {r["version"] for r in await store.query("SELECT version FROM postline.schema_migrations")}
    await store.close()
    assert 17 not in recorded and 18 in recorded
    assert await counted(server.url) == (0, HISTORY, HISTORY, HISTORY)  # its backfill: its migrator's
    assert "step 17 was claimed by another migrator" in caplog.text
