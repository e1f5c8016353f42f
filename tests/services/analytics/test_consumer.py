"""Analytics consumer into the real ClickHouse engine (chDB): exact stats, redelivery and
store outages neither lose nor double rows."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.analytics.consumer import AnalyticsConsumer
from shared import events as ev
from shared.log.sqlite import SqliteLog
from shared.store import queries
from tests.support.clickhouse_http import store_of_kind

pytestmark = pytest.mark.clickhouse
SVC = "svc-1"


def lifecycle(kind: str, email_id: str, rcpt: str, hours_ago: float = 0, **kw):
    cls = {"sent": ev.Sent, "delivered": ev.Delivered, "bounced": ev.Bounced, "dropped": ev.Dropped,
           "complained": ev.Complained}[kind]
    return cls(id=ev.derived_id(email_id, rcpt, kind), workspace_id="w", service_id=SVC, email_id=email_id,
               recipient=rcpt, time=ev.utcnow() - timedelta(hours=hours_ago), tags=kw.pop("tags", []), **kw)


def workload() -> list[ev.Event]:
    """30 messages: 20 delivered, 6 bounced, 4 dropped; 2 complaints; spread over 3 days."""
    out = []
    for i in range(30):
        eid, rcpt, ago = f"m{i}", f"u{i}@example.com", (i % 3) * 24 + 1
        tags = ["welcome"] if i % 2 else []
        if i < 26:
            out.append(lifecycle("sent", eid, rcpt, ago, tags=tags))
        if i < 20:
            out.append(lifecycle("delivered", eid, rcpt, ago, tags=tags))
        elif i < 26:
            out.append(lifecycle("bounced", eid, rcpt, ago, tags=tags, bounce_type="hard", smtp_code=550))
        else:
            out.append(lifecycle("dropped", eid, rcpt, ago, tags=tags, reason="suppressed"))
        if i in (3, 4):
            out.append(lifecycle("complained", eid, rcpt, ago, tags=tags))
    return out


@pytest.fixture(params=["chdb", "clickhouse-server"])
async def parts(request, tmp_path):
    """Every test here runs against both store adapters: chDB in-process, and the
    clickhouse-connect adapter over ClickHouse's HTTP interface (served over chDB)."""
    lg = SqliteLog(tmp_path / "log.sqlite3")
    await lg.start()
    async with store_of_kind(request.param, tmp_path / "chdb") as store:
        await store.migrate()
        yield lg, store
    await lg.close()


async def run_until_loaded(consumer: AnalyticsConsumer, lg, timeout: float = 20):
    """Run the consumer until it has committed everything on the events topic."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if lg._committed("analytics", ev.Topic.EVENTS) == {p: o for p, o in lg._ends(ev.Topic.EVENTS).items() if o}:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await task


EXPECTED = {"sent": 26, "delivered": 20, "bounced": 6, "dropped": 4, "complained": 2, "deferred": 0,
            "failed": 0, "opened": 0, "clicked": 0, "unsubscribed": 0, "unique_opened": 0, "unique_clicked": 0}


async def test_stats_totals_and_buckets_are_exact(parts):
    lg, store = parts
    events = workload()
    await lg.append_many(ev.Topic.EVENTS, [(e.email_id, ev.encode(e)) for e in events])
    await run_until_loaded(AnalyticsConsumer(lg, store, batch_seconds=0.3), lg)
    s = await queries.stats(store, SVC, "7d", "day", None)
    assert s["totals"] == EXPECTED
    assert len(s["buckets"]) == 8  # 7 days + today, zero-filled
    assert sum(b["delivered"] for b in s["buckets"]) == 20
    assert sorted(b["sent"] for b in s["buckets"] if b["sent"]) == [8, 9, 9]
    tagged = await queries.stats(store, SVC, "7d", "day", "welcome")
    assert tagged["totals"]["sent"] == 13 and tagged["totals"]["delivered"] == 10
    last_day = await queries.stats(store, SVC, "24h", "hour", None)
    assert last_day["totals"]["sent"] == 9 and len(last_day["buckets"]) in (24, 25)


async def test_tracking_counts_distinct_events_and_unique_recipients(parts):
    """Two API processes may record the same derived event id at different times: it counts
    once. unique_* count distinct (email, recipient) over the whole period."""
    lg, store = parts

    def track(cls, eid, rcpt, n, hours_ago, **kw):
        return cls(id=ev.derived_id(eid, rcpt, cls.__name__, n), workspace_id="w", service_id=SVC, email_id=eid,
                   recipient=rcpt, time=ev.utcnow() - timedelta(hours=hours_ago), **kw)

    events = [track(ev.Opened, "m1", "a@x.test", 1, 1), track(ev.Opened, "m1", "a@x.test", 2, 30),
              track(ev.Opened, "m2", "b@x.test", 1, 2), track(ev.Clicked, "m1", "a@x.test", 1, 1, url="https://x/"),
              track(ev.Unsubscribed, "m2", "b@x.test", 1, 2)]
    twin = events[0].model_copy(update={"time": events[0].time + timedelta(seconds=3)})  # same id, other process
    await lg.append_many(ev.Topic.EVENTS, [(e.email_id, ev.encode(e)) for e in events + [twin]])
    await run_until_loaded(AnalyticsConsumer(lg, store, batch_seconds=0.3), lg)
    s = await queries.stats(store, SVC, "7d", "day", None)
    assert {k: s["totals"][k] for k in ("opened", "unique_opened", "clicked", "unique_clicked", "unsubscribed")} == {
        "opened": 3, "unique_opened": 2, "clicked": 1, "unique_clicked": 1, "unsubscribed": 1}
    assert sum(b["opened"] for b in s["buckets"]) == 3
    assert sorted(b["unique_opened"] for b in s["buckets"] if b["unique_opened"]) in ([1, 2], [1, 1, 1])


async def test_tracking_events_get_their_message_tags_from_and_subject(parts):
    """Opens come from the token alone (no tags): loading adds the message's, so stats by tag count them."""
    from services.analytics.rows import message_row

    lg, store = parts
    req = ev.SendRequested(workspace_id="w", service_id=SVC, email_id="m9", mode="production", to=["a@x.test"],
                           recipients=["a@x.test"], subject="Spring sale", tags=["promo"], **{"from": "shop@acme.test"})
    await store.insert("messages", [message_row(req)], "m9")
    opened = ev.Opened(workspace_id="w", service_id=SVC, email_id="m9", recipient="a@x.test", machine=False)
    orphan = ev.Opened(workspace_id="w", service_id=SVC, email_id="unknown", recipient="b@x.test")
    await lg.append_many(ev.Topic.EVENTS, [(e.email_id, ev.encode(e)) for e in (opened, orphan)])
    await run_until_loaded(AnalyticsConsumer(lg, store, batch_seconds=0.3), lg)
    assert (await queries.stats(store, SVC, "24h", "hour", "promo"))["totals"]["opened"] == 1
    assert (await queries.stats(store, SVC, "24h", "hour", None))["totals"]["opened"] == 2
    (row,) = await queries.timeline(store, "m9", "w")
    assert (row["tags"], row["from"], row["subject"], row["machine"]) == (["promo"], "shop@acme.test", "Spring sale", False)


async def test_redelivered_events_do_not_change_counts(parts):
    lg, store = parts
    events = workload()
    await lg.append_many(ev.Topic.EVENTS, [(e.email_id, ev.encode(e)) for e in events])
    # consume without committing (a crash before the commit) ...
    c = AnalyticsConsumer(lg, store)
    await c.load(await _all_records(lg))
    # ... and again after the restart, plus the relay re-emitting the same events
    await lg.append_many(ev.Topic.EVENTS, [(e.email_id, ev.encode(e)) for e in events[:10]])
    await run_until_loaded(AnalyticsConsumer(lg, store, batch_seconds=0.3), lg)
    assert (await queries.stats(store, SVC, "7d", "day", None))["totals"] == EXPECTED


async def _all_records(lg):
    consumer = lg.consumer([ev.Topic.EVENTS], None)
    await consumer.start()
    out = []
    while batch := await consumer.poll(max_records=10_000, timeout=0.2):
        out += batch
    await consumer.close()
    return out


class FlakyStore:
    """The real store behind an adapter that raises while 'down'."""

    def __init__(self, inner):
        self.inner, self.down, self.failures = inner, True, 0

    async def insert(self, table, rows, token):
        if self.down:
            self.failures += 1
            raise ConnectionError("ClickHouse unavailable")
        await self.inner.insert(table, rows, token)

    async def query(self, sql, params=None):
        return await self.inner.query(sql, params)


async def test_store_outage_loses_and_doubles_nothing(parts):
    lg, store = parts
    flaky = FlakyStore(store)
    events = workload()
    await lg.append_many(ev.Topic.EVENTS, [(e.email_id, ev.encode(e)) for e in events])
    stop = asyncio.Event()
    task = asyncio.create_task(AnalyticsConsumer(lg, flaky, batch_seconds=0.2).run(stop))
    while flaky.failures < 3:
        await asyncio.sleep(0.1)
    flaky.down = False
    for _ in range(100):
        if (await queries.stats(store, SVC, "7d", "day", None))["totals"]["sent"] == 26:
            break
        await asyncio.sleep(0.2)
    stop.set()
    await task
    assert (await queries.stats(store, SVC, "7d", "day", None))["totals"] == EXPECTED


async def test_poison_event_goes_to_dead_letter(parts):
    lg, store = parts
    good = workload()[:3]
    await lg.append(ev.Topic.EVENTS, "x", b"{not json")
    await lg.append_many(ev.Topic.EVENTS, [(e.email_id, ev.encode(e)) for e in good])
    await run_until_loaded(AnalyticsConsumer(lg, store, batch_seconds=0.3), lg)
    consumer = lg.consumer([ev.Topic.DEAD_LETTER], None)
    await consumer.start()
    dead = await consumer.poll(timeout=0.5)
    await consumer.close()
    assert [r.value for r in dead] == [b"{not json"]
    assert "analytics" == dead[0].headers["group"] and dead[0].headers["source"].startswith("email.events/")
