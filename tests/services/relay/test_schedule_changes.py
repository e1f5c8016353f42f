"""Cancel and reschedule of held sends on the relay's scheduler, over a real embedded log."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from services.relay.schedule_changes import apply_change
from services.relay.scheduler import HANDED_OVER, Scheduler
from shared import events as ev
from shared.log.sqlite import SqliteLog


def request(email_id: str, due: datetime) -> ev.SendRequested:
    return ev.SendRequested(workspace_id="w", service_id="s", email_id=email_id, mode="production", to=["a@example.com"],
                            recipients=["a@example.com"], subject="later", text="x", scheduled_at=due,
                            **{"from": "hello@acme.test"})


async def read_all(log: SqliteLog, topic: str, group: str) -> list:
    consumer = log.consumer([topic], group)
    await consumer.start()
    try:
        return [ev.decode(r.value) for r in await consumer.poll(max_records=100, timeout=0.3)]
    finally:
        await consumer.close()


async def test_cancel_drops_the_held_request_and_is_remembered(tmp_path):
    log = SqliteLog(tmp_path / "log.sqlite3")
    await log.start()
    scheduler = Scheduler(tmp_path / "scheduled.sqlite3", log)
    ctx = SimpleNamespace(log=log)
    try:
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        assert await scheduler.hold(request("e1", later))
        await apply_change(ctx, scheduler, ev.SendCanceled(workspace_id="w", service_id="s", email_id="e1"))
        assert scheduler._next_due() is None and scheduler.is_canceled("e1")
        # the request redelivered after a crash is not held again
        assert not await scheduler.hold(request("e1", later))
        [canceled] = await read_all(log, ev.Topic.EVENTS, "t1")
        assert (canceled.type, canceled.email_id, canceled.recipient) == ("canceled", "e1", "a@example.com")
        # a cancel that finds nothing held (already released) emits nothing
        await apply_change(ctx, scheduler, ev.SendCanceled(workspace_id="w", service_id="s", email_id="e2"))
        assert [e.email_id for e in await read_all(log, ev.Topic.EVENTS, "t2")] == ["e1"]
    finally:
        scheduler.close()
        await log.close()


async def test_reschedule_moves_the_due_time_and_releases_the_moved_request(tmp_path):
    log = SqliteLog(tmp_path / "log.sqlite3")
    await log.start()
    scheduler = Scheduler(tmp_path / "scheduled.sqlite3", log)
    ctx = SimpleNamespace(log=log)
    stop = asyncio.Event()
    try:
        assert await scheduler.hold(request("e1", datetime.now(timezone.utc) + timedelta(hours=1)))
        soon = datetime.now(timezone.utc) + timedelta(milliseconds=300)
        await apply_change(ctx, scheduler, ev.SendRescheduled(workspace_id="w", service_id="s", email_id="e1",
                                                              scheduled_at=soon))
        [scheduled] = await read_all(log, ev.Topic.EVENTS, "t1")
        assert scheduled.type == "scheduled" and scheduled.scheduled_at == soon
        runner = asyncio.create_task(scheduler.run(stop))
        released: list = []
        for _ in range(50):
            released = await read_all(log, ev.Topic.REQUESTS, "t2")
            if released:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await runner
        [req] = released
        assert req.email_id == "e1" and req.scheduled_at == soon
        # nothing is held any more: a late reschedule finds nothing and emits nothing
        await apply_change(ctx, scheduler, ev.SendRescheduled(workspace_id="w", service_id="s", email_id="e1",
                                                              scheduled_at=soon + timedelta(hours=1)))
        assert len(await read_all(log, ev.Topic.EVENTS, "t3")) == 1
    finally:
        scheduler.close()
        await log.close()


def rescheduled(email_id: str, when: datetime, **kw) -> ev.SendRescheduled:
    return ev.SendRescheduled(workspace_id="w", service_id="s", email_id=email_id, scheduled_at=when, **kw)


async def test_a_change_that_finds_nothing_held_applies_to_the_copy_that_comes_later(tmp_path):
    """On Kafka the change can reach the partition's new owner before the held request does
    (handed over by the relay that held it): the change is remembered, and the copy that
    comes later goes by it."""
    log = SqliteLog(tmp_path / "log.sqlite3")
    await log.start()
    scheduler = Scheduler(tmp_path / "scheduled.sqlite3", log)
    ctx = SimpleNamespace(log=log)
    try:
        first, moved = (datetime.now(timezone.utc) + timedelta(hours=h) for h in (1, 3))
        await apply_change(ctx, scheduler, rescheduled("e1", moved), partition=2)
        assert scheduler._next_due() is None  # nothing held here, nothing emitted
        assert await read_all(log, ev.Topic.EVENTS, "t1") == []
        copy = scheduler.as_changed(request("e1", first))
        assert copy is not None and copy.scheduled_at == moved
        unchanged = request("e2", first)
        assert scheduler.as_changed(unchanged) is unchanged
        await apply_change(ctx, scheduler, ev.SendCanceled(workspace_id="w", service_id="s", email_id="e3"))
        assert scheduler.as_changed(request("e3", first)) is None
    finally:
        scheduler.close()
        await log.close()


async def test_hand_over_re_appends_what_belongs_to_partitions_owned_elsewhere(tmp_path):
    """A relay hands what it holds for partitions it no longer owns (or of an unknown
    partition: a file from before partitions were kept) back to ``email.requests``, then the
    changes it remembers of those partitions, each marked ``HANDED_OVER``, and forgets them;
    the rest stays."""
    log = SqliteLog(tmp_path / "log.sqlite3", partitions=1)
    await log.start()
    scheduler = Scheduler(tmp_path / "scheduled.sqlite3", log)
    try:
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        assert await scheduler.hold(request("kept", later), partition=0)
        assert await scheduler.hold(request("moved", later), partition=1)
        assert await scheduler.hold(request("unknown", later))
        await scheduler.reschedule(rescheduled("elsewhere-kept", later + timedelta(hours=1)), partition=0)
        await scheduler.reschedule(rescheduled("elsewhere-moved", later + timedelta(hours=1)), partition=1)
        await scheduler.cancel(ev.SendCanceled(workspace_id="w", service_id="s", email_id="canceled-moved"), partition=1)
        assert await scheduler.hand_over({0}) == 2
        consumer = log.consumer([ev.Topic.REQUESTS], "t1")
        await consumer.start()
        handed = await consumer.poll(max_records=100, timeout=0.3)
        await consumer.close()
        assert all(r.headers == {HANDED_OVER: "1"} for r in handed)
        values = [ev.decode(r.value) for r in handed]
        assert sorted(v.email_id for v in values[:2]) == ["moved", "unknown"]  # held requests first
        assert all(v.type == "send-requested" and v.scheduled_at == later for v in values[:2])
        assert sorted((v.type, v.email_id) for v in values[2:]) == [("send-cancelled", "canceled-moved"),
                                                                    ("send-rescheduled", "elsewhere-moved")]
        assert [i for i, _ in scheduler._due(later.timestamp() + 1)] == ["kept"]
        assert scheduler.as_changed(request("elsewhere-kept", later)).scheduled_at == later + timedelta(hours=1)
        assert scheduler.as_changed(request("elsewhere-moved", later)).scheduled_at == later  # forgotten here
        assert scheduler.as_changed(request("canceled-moved", later)) is not None
        assert await scheduler.hand_over(set()) == 1  # a stop: everything goes
        assert scheduler._next_due() is None
    finally:
        scheduler.close()
        await log.close()


async def test_a_handed_over_reschedule_loses_to_a_later_one_applied_here(tmp_path):
    """The partition's new owner may apply a reschedule before the old owner hands over an
    earlier one (and the copy it held): the earlier one changes nothing."""
    log = SqliteLog(tmp_path / "log.sqlite3")
    await log.start()
    scheduler = Scheduler(tmp_path / "scheduled.sqlite3", log)
    try:
        now = datetime.now(timezone.utc)
        newer = rescheduled("e1", now + timedelta(hours=3))
        older = rescheduled("e1", now + timedelta(hours=2), time=now - timedelta(minutes=1))
        assert await scheduler.reschedule(newer, 0) is None  # nothing held yet
        assert await scheduler.hold(scheduler.as_changed(request("e1", now + timedelta(hours=1))), 0)
        assert await scheduler.reschedule(older, 0, handed_over=True) is None
        assert scheduler._due(time.time() + 3 * 3600 + 60)[0][0] == "e1"
        assert scheduler._due(time.time() + 2 * 3600 + 60) == []  # still at the later one's time
        # a change that comes in log order wins whatever its clock says (two API replicas' clocks)
        assert (await scheduler.reschedule(older, 0)).scheduled_at == now + timedelta(hours=2)
    finally:
        scheduler.close()
        await log.close()


async def test_a_cancel_remembered_before_partitions_were_kept_stays(tmp_path):
    """A relay file from before this version remembers cancels without their partition or
    record: none is handed over — a stop included, whose ``keep`` is empty — and each still
    keeps a later copy from going out here."""
    log = SqliteLog(tmp_path / "log.sqlite3")
    await log.start()
    scheduler = Scheduler(tmp_path / "scheduled.sqlite3", log)
    try:
        scheduler._db.execute("INSERT INTO cancelled(email_id, at) VALUES ('old', ?)", (time.time(),))
        assert await scheduler.hand_over(set()) == 0
        assert await read_all(log, ev.Topic.REQUESTS, "t1") == []
        assert scheduler.as_changed(request("old", datetime.now(timezone.utc) + timedelta(hours=1))) is None
    finally:
        scheduler.close()
        await log.close()
