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
                await self.take(await self.consumer.poll(max_records=1000, timeout=0.2))
                await self.forward_due()
                await asyncio.sleep(min(0.5, self.next_wait()))
        finally:
            await self.consumer.close()

    async def take(self, records: list[Record]) -> None:
        """Buffer ``records`` by due time. An unreadable one is poison: dead-lettered and
        committed with the next due prefix (due at once, never forwarded) — unless most of the
        batch is, which halts the forwarder (``ConsumerHalted``, nothing dead-lettered or
        committed: a bad deploy, not bad records), as every consumer's ``PoisonGuard`` does."""
        for rec in records:
            try:
                self._buffer[rec.partition].append((due_at(rec), rec))
            except Exception as exc:
                self.guard.mark(rec, exc)
                self._buffer[rec.partition].append((0.0, rec))
        if records:
            await self.guard.settle(records)

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
