"""Poison records: what a consumer dead-letters, and when it halts instead.

Poison is decided by type, never by guessing: a record is poison when it does not decode
(``ev.decode`` is a pure function of the record's bytes, so whatever it raises is about
them) or when a step raises ``InvalidRecord`` (shared/log/port.py) for it. Any other
exception — a bug in our code (``TypeError``, ``KeyError``…) or a store or log down — is
not the record's fault: the consumer loop retries the batch (shared/consumer_loop.py) and
nothing good is dead-lettered.

Poison goes to the dead-letter topic with the error and the source offset, and the
partition moves on. When most of a batch is poison (``HALT_SHARE`` of it, at least
``HALT_MIN_POISON`` records) or ``MAX_CONSECUTIVE_POISON`` records in a row are, the cause
is almost surely a bad deploy (a new schema the records do not match), not bad data: the
consumer halts, says so, and neither dead-letters nor commits that batch, so a fixed deploy
processes it again.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Awaitable, Callable, Iterator

from shared import events as ev
from shared import metrics
from shared.log.port import EventLog, InvalidRecord, Record

log = logging.getLogger(__name__)
MAX_CONSECUTIVE_POISON = 100
HALT_SHARE = 0.5  # "most of a batch": strictly more than this share of its records...
HALT_MIN_POISON = 5  # ...and at least this many, so one bad record in a tiny batch is just dead-lettered

Handler = Callable[[list[Record]], Awaitable[None]]


class ConsumerHalted(RuntimeError):
    """Raised to stop a consumer for good (e.g. every record is poison after a bad deploy)."""


class PoisonGuard:
    """Collects the poison records of a batch (``decode``, ``for_record``) and, once the
    handler is done (``guarded``), dead-letters them — or halts when most of the batch is
    poison, rather than dead-lettering the whole stream."""

    def __init__(self, event_log: EventLog, group: str) -> None:
        self.log, self.group, self.consecutive = event_log, group, 0
        self.pending: list[tuple[Record, BaseException]] = []

    async def dead_letter(self, record: Record, error: BaseException) -> None:
        """Append ``record`` to the dead-letter topic now (durable when it returns), with the
        error and its source. Raises the log's errors."""
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
        """Wrap the handling of one record: ``InvalidRecord`` marks it poison and is
        swallowed; any other exception (a bug, an infrastructure fault) propagates, so the
        loop retries the batch."""
        try:
            yield
        except InvalidRecord as exc:
            log.warning("%s: record %s/%s@%s is poison: %s", self.group, record.topic, record.partition,
                        record.offset, exc)
            self.mark(record, exc)

    async def decode(self, record: Record) -> Any:
        """The event in ``record``, or None after marking a record that does not decode."""
        try:
            return ev.decode(record.value)
        except Exception as exc:  # decoding reads only the bytes: any failure is theirs
            self.mark(record, exc)
            return None

    async def decode_all(self, records: list[Record]) -> list[Any]:
        """The events of ``records`` that decode, in order (the others are marked)."""
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
