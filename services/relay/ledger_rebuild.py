"""Rebuild the delivery ledger of the request partitions a relay is handed, from the log.

Outcome events are appended to ``email.events`` keyed by email id, like the requests on
``email.requests``; with the same partition count, the outcomes of request partition *p*
are on events partition *p*. So when a relay is assigned partition *p* (a failover, a
rebalance, a start), before it handles any request of it, it reads the final outcomes
(delivered, bounced, failed) on events partition *p* into its ledger: a request the
previous owner finished but had not committed is then emitted again, not sent again.

Look-back: only requests after the committed offset can come again, and their outcomes were
appended after them; so the read starts at the append time of the first uncommitted request,
minus ``ledger_clock_margin`` for clock skew between hosts, and never before the queue
lifetime. A partition with nothing uncommitted needs no read. If the two topics' partition
counts differ, keys do not map to the same partition numbers: every events partition is
read (slower, still correct) and a warning says so."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Callable

from services.relay.ledger import Ledger, Row
from services.relay.outcome import DeliveryResult, ResultStatus
from shared import events as ev
from shared.log.port import EventLog, Record
from shared.settings import Settings

log = logging.getLogger(__name__)
_FINAL = {"delivered": b'"type":"delivered"', "bounced": b'"type":"bounced"', "failed": b'"type":"failed"'}


def outcome_rows(records: list[Record]) -> list[Row]:
    """Ledger rows of the final outcomes among ``records`` (other events are skipped unparsed;
    an unreadable record is skipped: the poison guard of the consumers deals with it)."""
    rows: list[Row] = []
    for r in records:
        if not any(marker in r.value for marker in _FINAL.values()):
            continue
        try:
            e = ev.decode(r.value)
        except ValueError:
            continue
        if e.type not in _FINAL or not e.recipient:
            continue
        kind: ResultStatus = "deferred" if e.type == "failed" else e.type  # how the ledger keeps a failure
        rows.append((e.email_id, e.recipient, e.type,
                     DeliveryResult(kind, e.smtp_code, e.smtp_reply, getattr(e, "mx_host", None), e.time,
                                    source_ip=getattr(e, "source_ip", None), tls=getattr(e, "tls", None),
                                    failure=getattr(e, "reason", None))))
    return rows


class LedgerRebuild:
    """The ``on_assigned`` hook of the relay's request consumer."""

    def __init__(self, event_log: EventLog, ledger: Ledger, settings: Settings, retry_delay: float = 1.0,
                 continues: Callable[[], bool] = lambda: True) -> None:
        """``continues``: the consumer's ``assignment_continues`` (read in ``on_assigned``)."""
        self.log, self.ledger, self.settings = event_log, ledger, settings
        self.retry_delay = retry_delay
        self.continues = continues
        self._held: set[int] = set()

    async def on_assigned(self, starts: dict[tuple[str, int], int]) -> None:
        """Rebuild every newly assigned request partition; retries until it succeeds, since
        handling a partition with an incomplete ledger could send mail twice."""
        parts = {p: off for (topic, p), off in starts.items() if topic == str(ev.Topic.REQUESTS)}
        # kept ones: our ledger is current — unless the group went on without us in between (an
        # expulsion: the partition's owner meanwhile delivered what our ledger does not know)
        kept = self._held if self.continues() else set()
        fresh = {p: off for p, off in parts.items() if p not in kept}
        delay = self.retry_delay
        while fresh:
            try:
                await self.rebuild(fresh)
                break
            except Exception:
                log.exception("rebuilding the delivery ledger failed; retrying in %.0fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self._held = set(parts)

    async def rebuild(self, starts: dict[int, int]) -> int:
        """Read the outcomes of request partitions ``{partition: committed offset}``; returns
        how many outcomes went into the ledger."""
        t0, since = time.monotonic(), {}
        for p, committed in starts.items():
            first = await self._first_record(str(ev.Topic.REQUESTS), p, committed)
            if first is not None:
                floor = int((time.time() - self.settings.queue_lifetime) * 1000)
                since[p] = max(floor, first.timestamp_ms - self.settings.ledger_clock_margin * 1000)
        if not since:
            return 0
        events_parts = await self.log.partition_count(str(ev.Topic.EVENTS))
        if events_parts == await self.log.partition_count(str(ev.Topic.REQUESTS)):
            plan = since
        else:
            log.warning("%s has %d partitions and %s another count: reading every events partition to rebuild "
                        "the delivery ledger", ev.Topic.EVENTS, events_parts, ev.Topic.REQUESTS)
            plan = {p: min(since.values()) for p in range(events_parts)}
        n = 0
        for p, since_ms in plan.items():
            async for batch in self.log.scan(str(ev.Topic.EVENTS), p, since_ms=since_ms):
                rows = outcome_rows(batch)
                await self.ledger.record(rows)
                n += len(rows)
        log.info("delivery ledger of request partitions %s rebuilt from %s: %d outcomes in %.2fs",
                 sorted(since), ev.Topic.EVENTS, n, time.monotonic() - t0)
        return n

    async def _first_record(self, topic: str, partition: int, offset: int) -> Record | None:
        async with contextlib.aclosing(self.log.scan(topic, partition, start=offset)) as batches:
            async for batch in batches:
                return batch[0]
        return None
