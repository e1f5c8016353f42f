"""The thin runner every consumer uses: poll → handle the batch → commit, until stopped.

The handler's effects must be durable when it returns; the commit comes last, so a crash
anywhere before it redelivers the batch (at-least-once; effects are idempotent).

Two kinds of failure, two answers:
- **Infrastructure faults** (store or log down: any exception not listed below) retry the
  whole batch with backoff, forever; nothing is lost and nothing is skipped.
- **Poison records** — a record that does not decode, or whose handling raises
  ``InvalidRecord`` or a content error (``POISON_ERRORS``: a bug or bad data that no retry
  can fix) — go to the dead-letter topic with the error and the source offset, and the
  partition moves on. When most of a batch is poison (``HALT_SHARE`` of it, at least
  ``HALT_MIN_POISON`` records) or ``MAX_CONSECUTIVE_POISON`` records in a row are, the
  cause is almost surely a bad deploy, not bad data: the consumer halts, says so, and
  neither dead-letters nor commits that batch, so a fixed deploy processes it again.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable, Iterator

from shared import events as ev
from shared import metrics
from shared.backoff_log import DEPENDENCIES, dependency_of
from shared.failpoints import failpoint
from shared.log.port import CommitFailed, Consumer, EventLog, Record

log = logging.getLogger(__name__)
MAX_CONSECUTIVE_POISON = 100
HALT_SHARE = 0.5  # "most of a batch": strictly more than this share of its records...
HALT_MIN_POISON = 5  # ...and at least this many, so one bad record in a tiny batch is just dead-lettered

Handler = Callable[[list[Record]], Awaitable[None]]


class ConsumerHalted(RuntimeError):
    """Raised to stop a consumer for good (e.g. every record is poison after a bad deploy)."""


class InvalidRecord(Exception):
    """Raised by a handler step for a record that can never be handled (its content is
    wrong, not the infrastructure): the record is dead-lettered and the partition moves on."""


# Errors that come from a record's content or from a bug meeting it — never from a store or
# log being down (those are OSError, sqlite3/Kafka/ClickHouse errors): retrying cannot help.
POISON_ERRORS: tuple[type[BaseException], ...] = (InvalidRecord, ValueError, LookupError, TypeError, AttributeError)


class PoisonGuard:
    """Collects the poison records of a batch (``decode``, ``for_record``) and, once the
    handler is done (``guarded``), dead-letters them — or halts when most of the batch is
    poison, rather than dead-lettering the whole stream."""

    def __init__(self, event_log: EventLog, group: str):
        self.log, self.group, self.consecutive = event_log, group, 0
        self.pending: list[tuple[Record, BaseException]] = []

    async def dead_letter(self, record: Record, error: BaseException) -> None:
        """Append ``record`` to the dead-letter topic now, with the error and its source."""
        log.error("dead-lettering %s/%s@%s: %s", record.topic, record.partition, record.offset, error)
        metrics.DEAD_LETTERS.labels(self.group).inc()
        await self.log.append(ev.Topic.DEAD_LETTER, record.key, record.value, {
            "error": f"{type(error).__name__}: {error}"[:1000], "group": self.group,
            "source": f"{record.topic}/{record.partition}/{record.offset}"})

    def mark(self, record: Record, error: BaseException) -> None:
        """Note ``record`` as poison; it is dead-lettered when the batch is settled."""
        self.pending.append((record, error))

    @contextlib.contextmanager
    def for_record(self, record: Record) -> Iterator[None]:
        """Wrap the handling of one record: a ``POISON_ERRORS`` exception marks it poison
        and is swallowed; any other exception (an infrastructure fault) propagates."""
        try:
            yield
        except POISON_ERRORS as exc:
            log.warning("%s: record %s/%s@%s is poison", self.group, record.topic, record.partition,
                        record.offset, exc_info=not isinstance(exc, InvalidRecord))
            self.mark(record, exc)

    def ok(self) -> None:
        """Kept for callers that report a good record; the batch settlement does this now."""

    async def decode(self, record: Record):
        """The event in ``record``, or None after marking a record that does not parse."""
        try:
            return ev.decode(record.value)
        except Exception as exc:
            self.mark(record, exc)
            return None

    async def decode_all(self, records: list[Record]) -> list:
        return [e for e in [await self.decode(r) for r in records] if e is not None]

    async def settle(self, records: list[Record]) -> None:
        """Dead-letter the batch's poison records, or raise ``ConsumerHalted`` (dead-lettering
        none of them) when there are too many: see the module docstring."""
        poison, self.pending = self.pending, []
        self.consecutive = self.consecutive + len(poison) if len(poison) == len(records) else 0
        too_many = len(poison) > HALT_SHARE * len(records) and len(poison) >= HALT_MIN_POISON
        if too_many or self.consecutive > MAX_CONSECUTIVE_POISON:
            first = poison[0][1]
            msg = (f"{self.group}: {len(poison)} of {len(records)} records in the batch are poison "
                   f"({self.consecutive} in a row), first: {type(first).__name__}: {first}; "
                   "halting the consumer (likely a bad deploy) without dead-lettering or committing them")
            log.critical(msg)
            raise ConsumerHalted(msg) from first
        for record, error in sorted(poison, key=lambda p: (p[0].topic, p[0].partition, p[0].offset)):
            await self.dead_letter(record, error)

    def guarded(self, handle: Handler) -> Handler:
        """``handle`` followed by ``settle``; a retried batch starts with no poison noted."""
        async def run(records: list[Record]) -> None:
            self.pending = []
            await handle(records)
            await self.settle(records)

        return run


async def commit(consumer: Consumer, records: list[Record]) -> None:
    """Commit ``records``; after a rebalance (``CommitFailed``) the partition's new owner
    processes them again from the last commit, so the loop goes on (at-least-once)."""
    try:
        await consumer.commit(records)
    except CommitFailed as exc:
        log.warning("%s; the records will be processed again by the partition's owner", exc)


async def run_consumer(consumer: Consumer, handle: Handler, stop: asyncio.Event, max_records: int = 500,
                       poll_timeout: float = 0.5, guard: PoisonGuard | None = None) -> None:
    """Run until ``stop`` is set; the batch in hand is finished and committed before returning.
    With ``guard``, each batch is settled by it (poison dead-lettered, or ``ConsumerHalted``)."""
    if guard is not None:
        handle = guard.guarded(handle)
    await consumer.start()
    try:
        while not stop.is_set():
            records = await consumer.poll(max_records=max_records, timeout=poll_timeout)
            if not records:
                continue
            await handle_until_done(handle, records, stop)
            failpoint("consumer.before_commit")  # the batch is fully handled: a safe crash point
            await commit(consumer, records)
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
