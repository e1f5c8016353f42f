"""The delay-topic forwarder: deferred requests wait on ``email.retry.<level>`` until due,
then go back to ``email.requests``. (The schedule itself — levels, delays, the plan — is
shared/retry_schedule.py.)

Every record on one level waits the same delay, so due times on a partition are in
order: the forwarder moves the due prefix of each partition and commits it; records
not yet due stay buffered (polling goes on, so the group membership stays alive). It runs
in the one consumer loop (shared/consumer_loop.py) with a policy of its own: called after
every poll, empty ones too (its timers), and it commits what it forwarded, not batches."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from shared import events as ev
from shared.consumer_loop import BatchPolicy, commit, run_consumer
from shared.log.port import Consumer, EventLog, Record
from shared.poison import PoisonGuard

log = logging.getLogger(__name__)
POLICY = BatchPolicy(max_records=1000, poll_timeout=0.2, commit=False, handle_empty=True)


def due_at(record: Record) -> float:
    """When ``record`` is due (epoch seconds). Raises what ``ev.decode`` raises."""
    req = ev.decode(record.value)
    return req.scheduled_at.timestamp() if req.scheduled_at else 0.0


class DelayForwarder:
    def __init__(self, event_log: EventLog, consumer: Consumer, target: str = ev.Topic.REQUESTS) -> None:
        self.log, self.consumer, self.target = event_log, consumer, str(target)
        self.guard = PoisonGuard(event_log, "relay-retry")
        self._buffer: dict[int, list[tuple[float, Record]]] = defaultdict(list)
        self._taken: dict[int, int] = {}  # partition → last offset buffered (a retried batch is not buffered twice)

    async def run(self, stop: asyncio.Event) -> None:
        """Forward until ``stop``. Raises ``ConsumerHalted`` (see ``take``)."""
        await run_consumer(self.consumer, self.step, stop, POLICY)

    async def step(self, records: list[Record]) -> None:
        """Buffer what was polled, then forward and commit what is due. Idempotent: the loop
        retries it with the same records after a failure (the log down)."""
        await self.take(records)
        await self.forward_due()

    async def take(self, records: list[Record]) -> None:
        """Buffer ``records`` by due time. An unreadable one is poison: dead-lettered and
        committed with the next due prefix (due at once, never forwarded) — unless most of the
        batch is, which halts the forwarder (``ConsumerHalted``, nothing dead-lettered or
        committed: a bad deploy, not bad records), as every consumer's ``PoisonGuard`` does."""
        fresh = [r for r in records if r.offset > self._taken.get(r.partition, -1)]
        entries = []
        for rec in fresh:
            try:
                entries.append((due_at(rec), rec))
            except Exception as exc:  # decoding reads only the bytes: any failure is theirs (shared/poison.py)
                self.guard.mark(rec, exc)
                entries.append((0.0, rec))
        if fresh:
            await self.guard.settle(fresh)
        for due, rec in entries:  # only once settled: a failed settle takes them again
            self._buffer[rec.partition].append((due, rec))
            self._taken[rec.partition] = rec.offset

    def next_wait(self) -> float:
        """Seconds until the earliest buffered record is due (0.5 with none)."""
        heads = [q[0][0] for q in self._buffer.values() if q]
        return max(0.0, min(heads) - time.time()) if heads else 0.5

    async def forward_due(self) -> None:
        """Append each partition's due prefix to the target (durable), then commit it. What is
        buffered of a partition the group has moved to another member is dropped: its new
        owner forwards it (from the last commit), and two copies of a retry would each try and
        each schedule the next retry."""
        now = time.time()
        for part in [p for p, q in self._buffer.items() if q and not self.consumer.owns(q[0][1].topic, p)]:
            log.info("partition %s of %s moved to another forwarder: %d buffered records dropped",
                     part, self._buffer[part][0][1].topic, len(self._buffer[part]))
            del self._buffer[part]
            self._taken.pop(part, None)
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
