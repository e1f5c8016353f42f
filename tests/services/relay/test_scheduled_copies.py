"""Copies of a scheduled request that reach the relay after a change — released at the old
time, or handed over by the partition's previous owner (Kafka) — through the real runner over
a real embedded log: a batch's changes are applied before its requests, a canceled copy is
not sent (and says ``canceled``), and a handed-over copy is held without a second
``scheduled`` event."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.relay.scheduler import HANDED_OVER
from shared import events as ev
from shared.log.sqlite import SqliteLog
from tests.support.relay import append_requests, request, running_relay, until
from tests.support.smtp_sink import SmtpSink

EMAIL = "6a0e6a0e-0000-4000-8000-0000005c4ed0"


@pytest.fixture
def sink():
    s = SmtpSink().start()
    yield s
    s.stop()


async def events_of(rt, kind: str) -> list[ev.Event]:
    consumer = rt.log.consumer([ev.Topic.EVENTS], None)
    await consumer.start()
    try:
        return [e for e in (ev.decode(r.value) for r in await consumer.poll(max_records=500, timeout=0.3))
                if e.type == kind]
    finally:
        await consumer.close()


def scheduled_at(due: datetime, email_id: str = EMAIL) -> ev.SendRequested:
    return request(email_id, "ann@example.com").model_copy(update={"scheduled_at": due})


def change(cls, **fields):
    return cls(workspace_id="w", service_id="s", email_id=EMAIL, **fields)


async def test_a_copy_after_a_cancel_in_the_same_batch_is_not_sent(tmp_path, sink):
    """A copy released at its time that comes after the email's cancel in one batch (the new
    owner of a partition takes what piled up meanwhile as one batch): not sent, and said
    ``canceled``."""
    released = scheduled_at(datetime.now(timezone.utc) - timedelta(seconds=1))
    log = SqliteLog(tmp_path / "data" / "log.sqlite3", partitions=1)  # both on the log before the relay polls
    await log.start()
    await log.append_many(ev.Topic.REQUESTS, [(EMAIL, ev.encode(change(ev.SendCanceled))), (EMAIL, ev.encode(released))])
    await log.close()
    async with running_relay(tmp_path / "data", sink, embedded_partitions=1) as (rt, relay):
        await until(lambda: relay.scheduler.is_canceled(EMAIL), what="the cancel applied")
        events = []
        for _ in range(40):
            if events := await events_of(rt, "canceled"):
                break
    assert [(e.email_id, e.recipient) for e in events] == [(EMAIL, "ann@example.com")]
    assert sink.received == []


async def test_handed_over_copies_and_changes_are_said_once(tmp_path, sink):
    """The partition's new owner holds a handed-over copy without saying ``scheduled`` again
    (its first holder did; a webhook subscriber would get it at every rebalance); says it for
    a reschedule it applies itself; ignores an earlier reschedule handed over after that one,
    and says nothing for the handed-over reschedule the copy already carries."""
    now = datetime.now(timezone.utc)
    first, moved, stale = now + timedelta(hours=1), now + timedelta(hours=3), now + timedelta(hours=2)
    handed = {HANDED_OVER: "1"}
    async with running_relay(tmp_path / "data", sink, embedded_partitions=1) as (rt, relay):
        await rt.log.append(ev.Topic.REQUESTS, EMAIL, ev.encode(scheduled_at(first)), handed)
        await until(lambda: relay.scheduler._next_due() == first.timestamp(), what="the copy held")
        await rt.log.append(ev.Topic.REQUESTS, EMAIL, ev.encode(change(ev.SendRescheduled, scheduled_at=moved)))
        await until(lambda: relay.scheduler._next_due() == moved.timestamp(), what="the copy moved")
        await rt.log.append(ev.Topic.REQUESTS, EMAIL, ev.encode(change(ev.SendRescheduled, scheduled_at=stale,
                                                                       time=now - timedelta(minutes=1))), handed)
        # the old owner's copy, moved before it handed it over, then the change that moved it
        await rt.log.append(ev.Topic.REQUESTS, EMAIL, ev.encode(scheduled_at(moved)), handed)
        await rt.log.append(ev.Topic.REQUESTS, EMAIL, ev.encode(change(ev.SendRescheduled, scheduled_at=moved)), handed)
        await append_requests(rt, [scheduled_at(now + timedelta(days=1), "sentinel")])  # after all of them
        await until(lambda: len(relay.scheduler._due(now.timestamp() + 2 * 86400)) == 2, what="the sentinel held")
        said = await events_of(rt, "scheduled")
        assert relay.scheduler._next_due() == moved.timestamp()
    assert sorted((e.email_id, e.scheduled_at) for e in said) == [(EMAIL, moved), ("sentinel", now + timedelta(days=1))]
    assert sink.received == []
