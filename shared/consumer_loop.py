"""The thin runner every consumer uses: poll → handle the batch → commit, until stopped.

The handler's effects must be durable when it returns; the commit comes last, so a crash
anywhere before it redelivers the batch (at-least-once; effects are idempotent)."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from shared import events as ev
from shared import metrics
from shared.backoff_log import DEPENDENCIES, dependency_of
from shared.failpoints import failpoint
from shared.log.port import Consumer, EventLog, Record

log = logging.getLogger(__name__)
MAX_CONSECUTIVE_POISON = 100


class ConsumerHalted(RuntimeError):
    """Raised to stop a consumer for good (e.g. every record is poison after a bad deploy)."""


class PoisonGuard:
    """Sends unreadable records to the dead-letter topic; halts the consumer when every
    record fails (a bad deploy), rather than dead-lettering the whole stream."""

    def __init__(self, event_log: EventLog, group: str):
        self.log, self.group, self.consecutive = event_log, group, 0

    async def dead_letter(self, record: Record, error: BaseException) -> None:
        self.consecutive += 1
        if self.consecutive > MAX_CONSECUTIVE_POISON:
            raise ConsumerHalted(f"{self.group}: {self.consecutive} poison records in a row; halting") from error
        log.error("dead-lettering %s/%s@%s: %s", record.topic, record.partition, record.offset, error)
        metrics.DEAD_LETTERS.labels(self.group).inc()
        await self.log.append(ev.Topic.DEAD_LETTER, record.key, record.value, {
            "error": f"{type(error).__name__}: {error}"[:1000], "group": self.group,
            "source": f"{record.topic}/{record.partition}/{record.offset}"})

    def ok(self) -> None:
        self.consecutive = 0

    async def decode(self, record: Record):
        """The event in ``record``, or None after dead-lettering a record that does not parse."""
        try:
            return ev.decode(record.value)
        except Exception as exc:
            await self.dead_letter(record, exc)
            return None

    async def decode_all(self, records: list[Record]) -> list:
        return [e for e in [await self.decode(r) for r in records] if e is not None]


async def run_consumer(consumer: Consumer, handle: Callable[[list[Record]], Awaitable[None]],
                       stop: asyncio.Event, max_records: int = 500, poll_timeout: float = 0.5) -> None:
    """Run until ``stop`` is set; the batch in hand is finished and committed before returning."""
    await consumer.start()
    try:
        while not stop.is_set():
            records = await consumer.poll(max_records=max_records, timeout=poll_timeout)
            if not records:
                continue
            await handle_until_done(handle, records, stop)
            failpoint("consumer.before_commit")  # the batch is fully handled: a safe crash point
            await consumer.commit(records)
    finally:
        await consumer.close()


async def handle_until_done(handle, records: list[Record], stop: asyncio.Event) -> None:
    """Retry a batch whose handling hit an infrastructure fault (store or log down); the
    handler is idempotent, so a partial first try is harmless."""
    delay, down = 0.2, None
    while True:
        try:
            await handle(records)
            if down:
                DEPENDENCIES.ok(down)
            return
        except ConsumerHalted:
            raise
        except Exception as exc:
            down = dependency_of(exc)
            if down:  # a dependency is down: one line per interval (shared/backoff_log.py)
                DEPENDENCIES.failed(down, exc)
            else:
                log.exception("batch failed; retrying in %.1fs", delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            if stop.is_set():
                raise
            delay = min(delay * 2, 10.0)
