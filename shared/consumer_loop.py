"""The one consumer loop: take a batch → handle it → commit, until stopped (arq's one worker
loop; what differs between consumers is a ``BatchPolicy``, like arroyo's strategies).

The handler's effects must be durable when it returns; the commit comes last, so a crash
anywhere before it redelivers the batch (at-least-once; effects are idempotent).

Failures, by type:
- **Poison** (a record that does not decode, or ``InvalidRecord`` from a step): settled by
  the consumer's ``PoisonGuard`` (shared/poison.py): dead-lettered, or a halt when most of
  the batch is.
- **Anything else the handler raises** — a store or log down, or a bug in our code (a
  ``TypeError`` is ours, not the record's) — retries the whole batch with backoff until it
  succeeds or the consumer stops; nothing is skipped, dead-lettered or committed. A
  dependency down is reported once per interval (shared/backoff_log.py), any other error
  once with its traceback, then again only when it changes.
- **A poll that fails** (the log unreachable): the policy says — raise (the role stops and
  its supervisor restarts the process) or keep polling (a follower keeps serving what it has).

Users: the relay (email.requests), webhooks and analytics (email.events), the delay
forwarders (email.retry.*) and every process's control follower (``FOLLOW``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from shared.backoff_log import DEPENDENCIES, dependency_of
from shared.failpoints import failpoint
from shared.log.port import CommitFailed, Consumer, InvalidRecord, Record
from shared.poison import ConsumerHalted, Handler, PoisonGuard

__all__ = ["BatchInterrupted", "BatchLost", "BatchPolicy", "ConsumerHalted", "FOLLOW", "Handler", "InvalidRecord", "PoisonGuard", "commit",
           "consume", "handle_until_done", "run_consumer"]
log = logging.getLogger(__name__)
MAX_RETRY_DELAY = 10.0


class BatchInterrupted(Exception):
    """Raised by a handler that leaves its batch unfinished because the consumer is stopping
    (a batch that could outlast the stop's grace period): the loop returns at once, nothing
    committed, no error logged; the batch is handled again by the next start or owner."""


class BatchLost(Exception):
    """Raised by ``ensure_batch_current`` in a handler whose batch the consumer's group has given
    to another member meanwhile (``Consumer.batch_current``): the loop drops the batch
    uncommitted and polls on; the records' new owner handles them (and, if the group gives
    them back, this consumer again, from the last commit)."""


_handling: ContextVar[Consumer | None] = ContextVar("_handling", default=None)


def ensure_batch_current() -> None:
    """Raise ``BatchLost`` when the batch being handled (by ``consume``, in this task or one it
    started) is no longer its consumer's. Called right before an effect that must not be made
    twice and cannot be taken back (a relay's SMTP transaction); outside a batch, nothing."""
    consumer = _handling.get()
    if consumer is not None and not consumer.batch_current():
        raise BatchLost("the consumer group gave this batch's partitions to another member while it was "
                        "handled (a rebalance that stopped waiting for it, or this member expelled)")


@dataclass(frozen=True)
class BatchPolicy:
    """How one consumer takes and settles its batches."""

    max_records: int = 500
    """At most this many records per batch."""
    max_wait: float = 0.0
    """Keep gathering a batch for up to this many seconds (until ``max_records``); 0: a batch
    is what one poll returns (analytics waits ~1 s for thousands of rows per insert)."""
    poll_timeout: float = 0.5
    """One poll waits at most this long for records."""
    commit: bool = True
    """Commit each batch once handled. False for a group-less follower (it never commits) and
    for a handler that commits what it has finished itself (the delay forwarder)."""
    handle_empty: bool = False
    """Call the handler after an empty poll too (a handler with timers of its own)."""
    on_unreachable: Literal["raise", "retry"] = "raise"
    """A poll that fails: raise it (the role ends, its supervisor restarts the process), or
    report it and poll again after a second (keep serving what this process has)."""


FOLLOW = BatchPolicy(max_records=5000, poll_timeout=1.0, commit=False, on_unreachable="retry")
"""A group-less follower of a topic (the control plane): big batches, no commits, and an
unreachable log is waited out while the process serves the state it has."""


async def run_consumer(consumer: Consumer, handle: Handler, stop: asyncio.Event,
                       policy: BatchPolicy = BatchPolicy(), guard: PoisonGuard | None = None) -> None:
    """Start ``consumer``, ``consume`` until ``stop`` is set, close it. The batch in hand is
    finished (and committed, per the policy) before returning. Raises ``ConsumerHalted``."""
    await consumer.start()
    try:
        await consume(consumer, handle, stop, policy, guard)
    finally:
        await consumer.close()


async def consume(consumer: Consumer, handle: Handler, stop: asyncio.Event,
                  policy: BatchPolicy = BatchPolicy(), guard: PoisonGuard | None = None) -> None:
    """The loop over a started consumer: take a batch, handle it until done (each batch
    settled by ``guard`` when given: poison dead-lettered, or ``ConsumerHalted``), commit it
    (per the policy). Returns once ``stop`` is set, or when a handler raises ``BatchInterrupted``
    (its batch left uncommitted); a batch whose handler raises ``BatchLost`` is left
    uncommitted and the loop goes on; never closes ``consumer``."""
    if guard is not None:
        handle = guard.guarded(handle)
    while not stop.is_set():
        try:
            records = await take_batch(consumer, policy, stop)
            if not records and not policy.handle_empty:
                continue
            handling = _handling.set(consumer)
            try:
                await handle_until_done(handle, records, stop)
            except BatchInterrupted:
                return
            except BatchLost as exc:
                log.warning("%s left unfinished and uncommitted: %s", _batch(records), exc)
                continue
            finally:
                _handling.reset(handling)
            if records and policy.commit:
                failpoint("consumer.before_commit")  # the batch is fully handled: a safe crash point
                await commit(consumer, records)
        finally:
            consumer.release()  # a rebalance waiting for this batch goes on


async def take_batch(consumer: Consumer, policy: BatchPolicy, stop: asyncio.Event) -> list[Record]:
    """Poll until the batch has ``max_records`` or ``max_wait`` has passed (one poll when 0)."""
    batch: list[Record] = []
    deadline = time.monotonic() + policy.max_wait
    while True:
        left = deadline - time.monotonic()
        timeout = policy.poll_timeout if policy.max_wait <= 0 else max(0.0, min(left, policy.poll_timeout))
        batch += await poll(consumer, policy, policy.max_records - len(batch), timeout, stop)
        if len(batch) >= policy.max_records or stop.is_set() or time.monotonic() >= deadline:
            return batch


async def poll(consumer: Consumer, policy: BatchPolicy, max_records: int, timeout: float,
               stop: asyncio.Event) -> list[Record]:
    """One poll; a failure is raised or reported and waited out, as the policy says."""
    try:
        return await consumer.poll(max_records=max_records, timeout=timeout)
    except Exception as exc:
        if policy.on_unreachable == "raise":
            raise
        down = dependency_of(exc)
        if down:
            DEPENDENCIES.failed(down, exc)  # one line per interval, not per poll
        else:
            log.exception("poll failed; polling again in 1 s")
        await _sleep_unless_stopped(stop, 1.0)
        return []


async def commit(consumer: Consumer, records: list[Record]) -> None:
    """Commit ``records``; after a rebalance (``CommitFailed``) the partition's new owner
    processes them again from the last commit, so the loop goes on (at-least-once)."""
    try:
        await consumer.commit(records)
    except CommitFailed as exc:
        log.warning("%s; the records will be processed again by the partition's owner", exc)


async def handle_until_done(handle: Handler, records: list[Record], stop: asyncio.Event) -> None:
    """Retry a batch whose handling raised (anything but ``ConsumerHalted``: a dependency down
    or a bug) with backoff until it succeeds; the handler is idempotent, so a partial try is
    harmless. Re-raises the last error when ``stop`` is set meanwhile (nothing committed)."""
    delay, down, tries, last = 0.2, None, 0, ""
    while True:
        try:
            await handle(records)
            if down:
                DEPENDENCIES.ok(down)
            elif tries:
                log.warning("a batch of %d records went through after %d failed tries", len(records), tries)
            return
        except (ConsumerHalted, BatchInterrupted, BatchLost):
            raise
        except Exception as exc:
            tries += 1
            down = dependency_of(exc)
            if down:  # a dependency is down: one line per interval (shared/backoff_log.py)
                DEPENDENCIES.failed(down, exc)
            elif repr(exc) != last:  # a bug: one line with the traceback, not one per retry
                log.error("handling %s failed; not poison (only undecodable records and InvalidRecord "
                          "are): retrying it until it succeeds, nothing is dead-lettered or committed meanwhile",
                          _batch(records), exc_info=exc)
            last = repr(exc)
            await _sleep_unless_stopped(stop, delay)
            if stop.is_set():
                raise
            delay = min(delay * 2, MAX_RETRY_DELAY)


def _batch(records: list[Record]) -> str:
    """'a batch of 3 records from email.events/2@41' for log lines."""
    if not records:
        return "an empty batch"
    first = records[0]
    return f"a batch of {len(records)} records from {first.topic}/{first.partition}@{first.offset}"


async def _sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass
