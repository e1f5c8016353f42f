"""Rate alerts over the real loader and store (chDB, the embedded log, the control plane):
crossing the complaint threshold emits one ``alert`` (not one per event, not one per round,
not one per process or restart) and it clears once when the rate is back under."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.analytics.alerts import AlertWatch
from services.analytics.consumer import AnalyticsConsumer
from shared import events as ev
from shared.control.plane import ControlPlane
from shared.log.sqlite import SqliteLog
from shared.store.chdb_store import ChdbStore

pytestmark = pytest.mark.clickhouse
SVC = "svc-alerts"


@pytest.fixture
async def parts(tmp_path):
    lg = SqliteLog(tmp_path / "log.sqlite3")
    await lg.start()
    control = ControlPlane(lg)
    await control.start()
    await control.save(ev.ServiceSaved(workspace_id="w", service_id=SVC, name="s", created_at=ev.utcnow(),
                                       alert_min_volume=10))
    store = ChdbStore(tmp_path / "chdb")
    await store.migrate()
    yield lg, control, store
    await control.close()
    await lg.close()


def outcome(kind: str, n: int, ago_h: float = 1) -> ev.Event:
    cls = {"delivered": ev.Delivered, "complained": ev.Complained}[kind]
    return cls(id=ev.derived_id("m", n, kind), workspace_id="w", service_id=SVC, email_id=f"m{n}",
               recipient=f"u{n}@example.com", time=ev.utcnow() - timedelta(hours=ago_h))


async def load(lg: SqliteLog, store: ChdbStore, events: list[ev.Event]) -> None:
    """Append ``events`` and run the real loader until everything on the topic is in the store."""
    if events:
        await lg.append_many(ev.Topic.EVENTS, [(e.email_id, ev.encode(e)) for e in events])
    stop = asyncio.Event()
    task = asyncio.create_task(AnalyticsConsumer(lg, store, batch_seconds=0.2).run(stop))
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        if lg._committed("analytics", ev.Topic.EVENTS) == {p: o for p, o in lg._ends(ev.Topic.EVENTS).items() if o}:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await task


async def test_complaint_rate_raises_one_alert_and_clears_once(parts):
    lg, control, store = parts
    watch = AlertWatch(lg, control, store)
    await load(lg, store, [outcome("delivered", i) for i in range(20)])
    assert await watch.evaluate() == []  # 0 complaints in 20 deliveries

    await load(lg, store, [outcome("complained", 0), outcome("complained", 1)])  # 2 / 20 = 10% > 0.1%
    raised = await watch.evaluate()
    assert [(a.kind, a.state) for a in raised] == [("complaint_rate", "raised")]
    assert raised[0].value == pytest.approx(0.1) and raised[0].threshold == 0.001
    assert await watch.evaluate() == []  # not loaded yet: the watch remembers what it emitted
    other = await AlertWatch(lg, control, store).evaluate()  # a second process before the load: the same event
    assert [a.id for a in other] == [raised[0].id]

    await load(lg, store, [])  # the alert is in the store now
    assert await AlertWatch(lg, control, store).evaluate() == []  # a restarted watch reads it back
    await load(lg, store, [outcome("complained", 2)])  # more complaints: still one episode
    assert await watch.evaluate() == []

    await load(lg, store, [outcome("delivered", i) for i in range(20, 3020)])  # 3 / 3020 < 0.1%
    cleared = await watch.evaluate()
    assert [(a.kind, a.state, a.email_id) for a in cleared] == [("complaint_rate", "cleared", raised[0].email_id)]
    await load(lg, store, [])
    assert await AlertWatch(lg, control, store).evaluate() == []

    stored = await store.query("SELECT JSONExtractString(payload, 'state') AS s FROM postline.events FINAL "
                               "WHERE type = 'alert' ORDER BY time")
    assert [r["s"] for r in stored] == ["raised", "cleared"]


async def test_two_processes_on_either_side_of_an_hours_start_raise_one_alert(parts):
    lg, control, store = parts
    await load(lg, store, [outcome("delivered", i) for i in range(20)] + [outcome("complained", 0)])
    hour = ev.utcnow().replace(minute=0, second=0, microsecond=0)
    before = await AlertWatch(lg, control, store).evaluate(now=hour - timedelta(milliseconds=100))
    after = await AlertWatch(lg, control, store).evaluate(now=hour + timedelta(milliseconds=100))
    assert [a.state for a in before] == ["raised"] and [a.id for a in after] == [before[0].id]
    await load(lg, store, [outcome("delivered", i) for i in range(20, 3020)])  # cleared, then over again:
    cleared = await AlertWatch(lg, control, store).evaluate()
    await load(lg, store, [outcome("complained", n) for n in range(1, 40)])  # a new episode, a new id
    again = await AlertWatch(lg, control, store).evaluate()
    assert [a.state for a in cleared] == ["cleared"] and [a.state for a in again] == ["raised"]
    assert again[0].email_id != before[0].email_id


async def test_below_the_minimum_volume_nothing_is_raised(parts):
    lg, control, store = parts
    await load(lg, store, [outcome("delivered", i) for i in range(5)] + [outcome("complained", 0)])  # 20%, 5 < 10
    assert await AlertWatch(lg, control, store).evaluate() == []


async def test_old_events_leave_the_24_hour_window(parts):
    lg, control, store = parts
    await load(lg, store, [outcome("delivered", i, ago_h=30) for i in range(20)] + [outcome("complained", 0, ago_h=30)])
    assert await AlertWatch(lg, control, store).evaluate() == []


async def test_a_complaint_counts_under_the_provider_of_its_delivery(parts):
    """A feedback-loop report names no MX: the loader gives it its delivery's provider."""
    from shared.store import insights

    lg, _, store = parts
    delivered = ev.Delivered(id="d1", workspace_id="w", service_id=SVC, email_id="m1", recipient="u@gmail.test",
                             provider="google", source_ip="192.0.2.7")
    await load(lg, store, [delivered])
    await load(lg, store, [outcome("complained", 1)])  # m1, u1@example.com: no delivery loaded → unknown
    await load(lg, store, [ev.Complained(id="c1", workspace_id="w", service_id=SVC, email_id="m1", recipient="u@gmail.test")])
    by = await insights.grouped_stats(store, SVC, "provider", "24h", "hour", None, 10)
    assert {g["key"]: g["totals"]["complained"] for g in by["groups"]} == {"google": 1, "unknown": 1}
    by_ip = await insights.grouped_stats(store, SVC, "source_ip", "24h", "hour", None, 10)
    assert {g["key"]: g["totals"]["complained"] for g in by_ip["groups"]} == {"192.0.2.7": 1, "unknown": 1}
