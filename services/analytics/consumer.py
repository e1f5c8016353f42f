"""Analytics consumer: events and send requests into ClickHouse, in batches.

Batches close at ``batch_size`` rows or ``batch_seconds``; the insert comes before the
offset commit, and rows are deduplicated on event id, so a crash or a store outage loses
nothing and doubles nothing."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from services.analytics.enrich import add_message_fields
from services.analytics.rows import attempt_row, event_row, message_row
from shared import events as ev
from shared import metrics
from shared.consumer_loop import PoisonGuard, commit, handle_until_done
from shared.log.port import EventLog, Record
from shared.store import queries
from shared.store.port import AnalyticsStore

log = logging.getLogger(__name__)


class AnalyticsConsumer:
    def __init__(self, event_log: EventLog, store: AnalyticsStore, batch_size: int = 5000,
                 batch_seconds: float = 1.0):
        self.log, self.store = event_log, store
        self.batch_size, self.batch_seconds = batch_size, batch_seconds
        self.guard = PoisonGuard(event_log, "analytics")

    async def load(self, records: list[Record]) -> None:
        """Parse → map → insert (idempotent). Unreadable or unmappable records are marked
        poison; the guard dead-letters them once the batch is in (see ``run``)."""
        events, messages, attempts = [], [], []
        for record in records:
            e = await self.guard.decode(record)
            with self.guard.for_record(record):  # an event that cannot be mapped is dead-lettered
                if isinstance(e, ev.SendRequested):
                    if e.attempt == 0:
                        messages.append(message_row(e))
                elif e is not None and e.type in ev.LIFECYCLE_TYPES:
                    events.append(event_row(e))
                elif isinstance(e, ev.WebhookAttempted):
                    attempts.append(attempt_row(e))
        for table, rows, key in (("messages", messages, "email_id"), ("events", events, "event_id"),
                                 ("webhook_attempts", attempts, "attempt_id")):
            if rows and table == "events":  # after this batch's messages are in
                await add_message_fields(self.store, rows)
            if rows:
                with metrics.ANALYTICS_BATCH_SECONDS.time():
                    if table == "events":  # one row per event id whatever its time
                        await queries.insert_events(self.store, rows, _token(table, rows, key))
                    else:
                        await self.store.insert(table, rows, _token(table, rows, key))
                metrics.ANALYTICS_ROWS.labels(table).inc(len(rows))

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self.log.consumer([ev.Topic.REQUESTS, ev.Topic.EVENTS], "analytics")
        load = self.guard.guarded(self.load)
        await consumer.start()
        try:
            while not stop.is_set():
                batch: list[Record] = []
                deadline = time.monotonic() + self.batch_seconds
                while len(batch) < self.batch_size and not stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    batch += await consumer.poll(max_records=self.batch_size - len(batch), timeout=min(left, 0.5))
                if batch:
                    await handle_until_done(load, batch, stop)
                    await commit(consumer, batch)
        finally:
            await consumer.close()


def _token(prefix: str, rows: list[dict], key: str) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(r[key].encode())
    return f"{prefix}-{h.hexdigest()}"
