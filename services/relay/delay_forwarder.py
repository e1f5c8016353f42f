"""The delay-topic forwarder: deferred requests wait on ``email.retry.<level>`` until due,
then go back to ``email.requests``. (The schedule itself — levels, delays, the plan — is
shared/retry_schedule.py.)

Every record on one level waits the same delay, so due times on a partition are in
order: the forwarder moves the due prefix of each partition and commits it; records
not yet due stay buffered (polling goes on, so the group membership stays alive)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from shared import events as ev
from shared.consumer_loop import PoisonGuard, commit
from shared.log.port import Consumer, EventLog, Record

log = logging.getLogger(__name__)


def due_at(record: Record) -> float:
    req = ev.decode(record.value)
    return req.scheduled_at.timestamp() if req.scheduled_at else 0.0


class DelayForwarder:
    def __init__(self, event_log: EventLog, consumer: Consumer, target: str = ev.Topic.REQUESTS):
        self.log, self.consumer, self.target = event_log, consumer, str(target)
        self.guard = PoisonGuard(event_log, "relay-retry")
        self._buffer: dict[int, list[tuple[float, Record]]] = defaultdict(list)

    async def run(self, stop: asyncio.Event) -> None:
        await self.consumer.start()
        try:
            while not stop.is_set():
                for rec in await self.consumer.poll(max_records=1000, timeout=0.2):
                    try:
                        self._buffer[rec.partition].append((due_at(rec), rec))
                    except Exception as exc:  # unreadable: dead-letter it, it is committed with the next prefix
                        await self.guard.dead_letter(rec, exc)
                        self._buffer[rec.partition].append((0.0, rec))
                await self.forward_due()
                await asyncio.sleep(min(0.5, self.next_wait()))
        finally:
            await self.consumer.close()

    def next_wait(self) -> float:
        heads = [q[0][0] for q in self._buffer.values() if q]
        return max(0.0, min(heads) - time.time()) if heads else 0.5

    async def forward_due(self) -> None:
        now = time.time()
        for part, queue in self._buffer.items():
            n = 0
            while n < len(queue) and queue[n][0] <= now:
                n += 1
            if not n:
                continue
            batch = [rec for _, rec in queue[:n]]
            forward = [(r.key, r.value) for due, r in queue[:n] if due > 0]
            if forward:
                await self.log.append_many(self.target, forward)
            await commit(self.consumer, batch)
            del queue[:n]
