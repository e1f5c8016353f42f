"""Two copies of one request in one consumer batch (an Idempotency-Key duplicate accepted by
two API processes: same derived email id) reach the relay's runner together; its records
are handled concurrently, yet the message goes out once: the second copy waits for the
first, then finds the outcome in the ledger and emits the same event again."""
from __future__ import annotations

import asyncio

import pytest

from services.relay.claims import Claims
from shared import events as ev
from tests.support.relay import append_requests, request, running_relay
from tests.support.smtp_sink import SmtpSink

EMAIL = "6a0e6a0e-0000-4000-8000-00000000c0de"


@pytest.fixture
def slow_sink():
    s = SmtpSink(data_delay=0.5).start()  # the first copy is still in its SMTP transaction when the second is handled
    yield s
    s.stop()


async def delivered_events(rt) -> list[ev.Event]:
    consumer = rt.log.consumer([ev.Topic.EVENTS], None)
    await consumer.start()
    try:
        return [e for e in map(lambda r: ev.decode(r.value), await consumer.poll(max_records=500, timeout=0.5))
                if e.type == "delivered"]
    finally:
        await consumer.close()


async def test_two_copies_in_one_batch_make_one_smtp_delivery(tmp_path, slow_sink):
    copy = request(EMAIL, "ann@example.com", "bob@example.com")
    async with running_relay(tmp_path / "data", slow_sink, embedded_partitions=1) as (rt, relay):
        await append_requests(rt, [copy, copy])  # before the relay's first poll: one batch holds both
        events: list[ev.Event] = []
        for _ in range(300):  # each copy emits a delivered event per recipient: 4 once both copies are handled
            if len(events := await delivered_events(rt)) >= 4:
                break
            await asyncio.sleep(0.1)
    assert sorted(r for m in slow_sink.received for r in m.rcpt_tos) == ["ann@example.com", "bob@example.com"]
    assert len({e.id for e in events}) == 2  # the second copy emitted the first's outcomes again (same ids)


async def test_a_second_holder_of_an_email_id_waits_for_the_first():
    claims, order = Claims(), []

    async def take(name: str, pause: float):
        async with claims.hold(EMAIL):
            order.append(f"{name} in")
            await asyncio.sleep(pause)
            order.append(f"{name} out")

    await asyncio.gather(take("first", 0.05), take("second", 0))
    assert order == ["first in", "first out", "second in", "second out"]
    assert len(claims) == 0  # nothing kept for ids no longer held
