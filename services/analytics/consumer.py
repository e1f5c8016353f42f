"""Analytics consumer: events and send requests into ClickHouse, in batches.

Batches close at ``batch_size`` rows or ``batch_seconds``; the insert comes before the
offset commit, and rows are deduplicated on event id, so a crash or a store outage loses
nothing and doubles nothing."""
from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from services.analytics.enrich import add_delivery_path, add_message_fields
from services.analytics.rows import attempt_row, event_row, message_row
from shared import events as ev
from shared import metrics
from shared.consumer_loop import BatchPolicy, PoisonGuard, run_consumer
from shared.log.port import EventLog, Record
from shared.store import queries
from shared.store.port import AnalyticsStore

log = logging.getLogger(__name__)
GROUP = "analytics"  # its consumer group: whoever waits for a row reads its committed offsets (email_lookup.py)


class AnalyticsConsumer:
    def __init__(self, event_log: EventLog, store: AnalyticsStore, batch_size: int = 5000,
                 batch_seconds: float = 1.0) -> None:
        self.log, self.store = event_log, store
        self.batch_size, self.batch_seconds = batch_size, batch_seconds
        self.guard = PoisonGuard(event_log, "analytics")

    async def load(self, records: list[Record]) -> None:
        """Parse → map → insert (idempotent). Undecodable records (and any a mapping step
        rejects with ``InvalidRecord``) are marked poison; the guard dead-letters them once the
        batch is in. A mapping bug raises: the loop retries the batch (shared/consumer_loop.py)."""
        events, messages, attempts = [], [], []
        for record in records:
            e = await self.guard.decode(record)
            with self.guard.for_record(record):  # InvalidRecord: dead-lettered
                if isinstance(e, ev.SendRequested):
                    if e.attempt == 0:
                        messages.append(message_row(e))
                elif e is not None and e.type in ev.WEBHOOK_TYPES:
                    events.append(event_row(e))
                elif isinstance(e, ev.WebhookAttempted):
                    attempts.append(attempt_row(e))
        for table, rows, key in (("messages", messages, "email_id"), ("events", events, "event_id"),
                                 ("webhook_attempts", attempts, "attempt_id")):
            if rows and table == "events":  # after this batch's messages are in
                await add_message_fields(self.store, rows)
                await add_delivery_path(self.store, rows)
            if rows:
                with metrics.ANALYTICS_BATCH_SECONDS.time():
                    if table == "events":  # one row per event id whatever its time
                        await queries.insert_events(self.store, rows, _token(table, rows, key))
                    else:
                        await self.store.insert(table, rows, _token(table, rows, key))
                metrics.ANALYTICS_ROWS.labels(table).inc(len(rows))

    async def run(self, stop: asyncio.Event) -> None:
        """Load batches of up to ``batch_size`` records gathered for up to ``batch_seconds``
        (ClickHouse wants thousands of rows, about one insert a second), until ``stop``."""
        consumer = self.log.consumer([ev.Topic.REQUESTS, ev.Topic.EVENTS], GROUP)
        policy = BatchPolicy(max_records=self.batch_size, max_wait=self.batch_seconds)
        await run_consumer(consumer, self.load, stop, policy, guard=self.guard)


def _token(prefix: str, rows: list[dict[str, Any]], key: str) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(r[key].encode())
    return f"{prefix}-{h.hexdigest()}"
