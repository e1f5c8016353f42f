"""The two log features the delivery-ledger rebuild relies on, on every adapter: ``scan``
reads one partition from an offset or from a time up to its end, and a group consumer's
``on_assigned`` hook runs with the resume offsets before any record of the partitions is
returned."""
from __future__ import annotations

import asyncio
import time
import uuid

from tests.shared.log.test_contract import drain, make_log, topic  # noqa: F401  (fixtures)


async def _scan(lg, topic, part, **kw) -> list[bytes]:
    return [r.value for batch in [b async for b in lg.scan(topic, part, **kw)] for r in batch]


async def test_scan_from_an_offset_or_a_time_up_to_the_end(make_log, topic):
    lg = make_log()
    await lg.start()
    first = [await lg.append(topic, "k", f"a{i}".encode()) for i in range(3)]
    part = first[0][0]
    await asyncio.sleep(0.05)
    between = int(time.time() * 1000)
    await asyncio.sleep(0.05)
    await lg.append_many(topic, [("k", b"b0"), ("k", b"b1")])
    assert await _scan(lg, topic, part) == [b"a0", b"a1", b"a2", b"b0", b"b1"]
    assert await _scan(lg, topic, part, start=first[1][1]) == [b"a1", b"a2", b"b0", b"b1"]
    assert await _scan(lg, topic, part, since_ms=between) == [b"b0", b"b1"]
    assert await _scan(lg, topic, part, since_ms=int(time.time() * 1000) + 60_000) == []
    assert await lg.partition_count(topic) >= 1
    await lg.close()


async def test_on_assigned_runs_with_resume_offsets_before_any_record(make_log, topic):
    lg = make_log()
    await lg.start()
    await lg.append_many(topic, [("k", f"v{i}".encode()) for i in range(5)])
    group = f"g-{uuid.uuid4().hex[:6]}"
    c = lg.consumer([topic], group)
    await c.start()
    got = await drain(c, 5)
    await c.commit(got[:2])  # resume at the third record of the partition
    await c.close()
    part = got[0].partition

    calls, polled = [], []

    async def hook(starts):
        calls.append((dict(starts), len(polled)))

    c = lg.consumer([topic], group)
    c.on_assigned = hook
    await c.start()
    polled += await drain(c, 3)
    assert [r.value for r in polled] == [b"v2", b"v3", b"v4"]
    assert calls and calls[0][1] == 0  # before any record came back
    assert calls[0][0][(topic, part)] == got[2].offset
    await c.close()
    await lg.close()
