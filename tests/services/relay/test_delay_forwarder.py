"""The delay-topic forwarder on the embedded log: due requests go back to the target topic;
an unreadable record is dead-lettered and committed (its partition moves on), but a batch
that is mostly unreadable halts the forwarder with nothing dead-lettered or committed, as
every consumer's PoisonGuard does (shared/consumer_loop.py). On the broker: what a forwarder
buffered of a partition the group moves is forwarded once."""
from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest

from services.relay.delay_forwarder import DelayForwarder
from shared import events as ev
from shared.consumer_loop import ConsumerHalted
from shared.log.kafka import KafkaLog
from shared.log.sqlite import SqliteLog
from shared.settings import Settings

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


@pytest.mark.kafka
async def test_records_buffered_for_a_partition_that_moves_are_forwarded_once(tansu):
    """Two forwarders on the broker: the first buffers requests due in a few seconds, the second
    joins and takes some partitions; at the due time each request is forwarded once (the first
    drops what it buffered of the partitions it lost, their new owner forwards them)."""
    delayed, target = f"retry.{uuid.uuid4().hex[:8]}", f"requests.{uuid.uuid4().hex[:8]}"
    lg = KafkaLog(Settings(kafka_bootstrap=tansu.bootstrap, kafka_idempotence=False, kafka_session_timeout_ms=2000))
    await lg.start()
    due = ev.utcnow() + timedelta(seconds=8)
    reqs = [ev.encode(ev.decode(due_request(i)).model_copy(update={"scheduled_at": due})) for i in range(20)]
    await lg.append_many(delayed, [(f"e{i}", r) for i, r in enumerate(reqs)])
    stops = [asyncio.Event(), asyncio.Event()]
    a = DelayForwarder(lg, lg.consumer([delayed], "fwd"), target=target)
    tasks = [asyncio.create_task(a.run(stops[0]))]
    try:
        deadline = time.monotonic() + 20
        while sum(len(q) for q in a._buffer.values()) < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert sum(len(q) for q in a._buffer.values()) == 20
        b = DelayForwarder(lg, lg.consumer([delayed], "fwd"), target=target)
        tasks.append(asyncio.create_task(b.run(stops[1])))
        while not (b.consumer.assigned and b.consumer._c.assignment()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert b.consumer._c.assignment() and ev.utcnow() < due, "the second forwarder joined before the due time"
        got: list = []
        reader = lg.consumer([target], None)
        await reader.start()
        while len(got) < 20 and time.monotonic() < deadline + 10:
            got += await reader.poll(max_records=1000, timeout=0.5)
        got += await reader.poll(max_records=1000, timeout=2.0)  # a second copy would come by now
        await reader.close()
        assert sorted(r.key for r in got) == sorted(f"e{i}" for i in range(20))
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await lg.close()
