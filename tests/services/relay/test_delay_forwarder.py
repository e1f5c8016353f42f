"""The delay-topic forwarder on the embedded log: due requests go back to the target topic;
an unreadable record is dead-lettered and committed (its partition moves on), but a batch
that is mostly unreadable halts the forwarder with nothing dead-lettered or committed, as
every consumer's PoisonGuard does (shared/consumer_loop.py)."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.relay.delay_forwarder import DelayForwarder
from shared import events as ev
from shared.consumer_loop import ConsumerHalted
from shared.log.sqlite import SqliteLog

DELAYED, TARGET = "email.retry.test", "email.requests.test"


def due_request(i: int) -> bytes:
    return ev.encode(ev.SendRequested(workspace_id="w", service_id="s", email_id=f"e{i}", mode="production",
                                      to=["ann@example.com"], recipients=["ann@example.com"], subject="hi",
                                      text="t", scheduled_at=ev.utcnow() - timedelta(seconds=1),
                                      **{"from": "a@acme.test"}))


async def records_of(lg: SqliteLog, topic: str, group: str | None = None) -> list:
    consumer = lg.consumer([topic], group)
    await consumer.start()
    try:
        return await consumer.poll(max_records=1000, timeout=0.5)
    finally:
        await consumer.close()


@pytest.fixture
def event_log(sqlite_log):
    return sqlite_log


async def test_an_unreadable_record_is_dead_lettered_and_the_due_ones_forwarded(event_log):
    await event_log.append_many(DELAYED, [("e0", due_request(0)), ("x", b"{not json"), ("e1", due_request(1))])
    forwarder = DelayForwarder(event_log, event_log.consumer([DELAYED], "relay-retry"), target=TARGET)
    await forwarder.consumer.start()
    await forwarder.take(await forwarder.consumer.poll(max_records=1000, timeout=0.5))
    await forwarder.forward_due()
    await forwarder.consumer.close()
    assert sorted(r.key for r in await records_of(event_log, TARGET)) == ["e0", "e1"]
    [dead] = [r for r in await records_of(event_log, ev.Topic.DEAD_LETTER) if r.headers["source"].startswith(DELAYED)]
    assert dead.value == b"{not json" and dead.headers["group"] == "relay-retry"
    assert await records_of(event_log, DELAYED, "relay-retry") == []  # all three committed


async def test_a_mostly_unreadable_batch_halts_without_dead_lettering_or_committing(event_log):
    await event_log.append_many(DELAYED, [("e0", due_request(0))] + [("x", b"{bad %d" % i) for i in range(9)])
    forwarder = DelayForwarder(event_log, event_log.consumer([DELAYED], "relay-retry"), target=TARGET)
    with pytest.raises(ConsumerHalted, match="9 of 10 records"):
        await asyncio.wait_for(forwarder.run(asyncio.Event()), timeout=30)
    assert await records_of(event_log, ev.Topic.DEAD_LETTER) == []
    assert await records_of(event_log, TARGET) == []
    assert len(await records_of(event_log, DELAYED, "relay-retry")) == 10  # nothing committed
