"""The event-log port: what every service needs from Kafka or its embedded stand-in.

Semantics every adapter honours (checked by ``tests/shared/log/test_contract.py``):
- ``append`` returns only once the record is durable (fsync'd / acks=all) and yields
  its position; records with the same key go to the same partition, in order.
- A ``Consumer`` with a group resumes after the group's last committed position; with
  ``group=None`` it reads from the beginning and never commits (used for replays).
- Delivery is at-least-once: records after the last commit are delivered again after a
  restart. Consumers commit only after their effect is durable.

Errors are the port's own, so callers never catch an adapter's (``LogError`` and its
subclasses below); the contract suite checks each adapter raises them on the same paths.
"""
from __future__ import annotations

import abc
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncGenerator, Awaitable, Callable, Protocol, Sequence, TypeVar


class Verdict(Protocol):
    """What a guarded append's check returns: which of its items to append."""

    @property
    def chosen(self) -> Sequence[bool]: ...


T = TypeVar("T")
V = TypeVar("V", bound=Verdict)
Guard = Callable[[sqlite3.Connection], V]
"""A guarded append's check, run inside the write transaction (``EventLog.append_guarded``)."""


class LogError(Exception):
    """Base of the errors the event-log port raises. ``retriable``: whether the same call may
    succeed later (the log was down or slow) or will fail the same way (a bug, a refused
    request); ``shared/backoff_log.py`` treats the retriable ones as "the event log is down"."""

    retriable: bool = False
    dependency = "event_log"  # the name in postline_dependency_* metrics and in the log lines


class LogNotStarted(LogError, RuntimeError):
    """``append``/``append_many`` was called before ``start`` (or after ``close``): a bug."""


class LogUnavailable(LogError, ConnectionError):
    """The broker or the storage cannot be reached; an infrastructure fault, worth retrying."""

    retriable = True


class LogTimeout(LogUnavailable, TimeoutError):
    """The log did not answer within its deadline (``shared/log/deadline.py``). An append that
    timed out is not known to have failed: its record may still land (consumers deduplicate)."""


class LogRefused(LogError):
    """The log refused the request itself (record too large, unknown topic, not authorised):
    the same request fails the same way again."""


class LogRecordTooLarge(LogRefused):
    """The record is larger than the log takes (a topic created with a smaller
    ``max.message.bytes`` than Postline asks for): the sender's message, not the log, is at fault.
    ``index``: which of the items of an ``append_many`` it is, when the adapter knows (then
    none of them was appended)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class LogUnsupported(LogError, NotImplementedError):
    """This adapter does not offer the method (see the capability flags on ``EventLog``): a bug
    in the caller, which should have asked the flag first."""


class CommitFailed(LogError):
    """The consumer no longer owns a partition it tried to commit (the group rebalanced, or
    the consumer was closed). Nothing was committed for those records; their new owner
    will process them again from the last commit (at-least-once)."""


class InvalidRecord(Exception):
    """A record whose content can never be handled (bad data, not a fault of ours or of the
    infrastructure): raised by a consumer's step, or for bytes that do not decode. The only
    kind of poison: the consumer dead-letters the record and its partition moves on. Any
    other exception from a handler (a bug, a store down) retries the batch instead."""

    retriable = False


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp_ms: int
    headers: dict[str, str] = field(default_factory=dict)


class Consumer(abc.ABC):
    on_assigned: Callable[[dict[tuple[str, int], int]], Awaitable[None]] | None = None
    """Set before ``start``: awaited with ``{(topic, partition): offset consumption resumes at}``
    each time the group gives this consumer its partitions (all of them; possibly none), before
    ``poll`` returns any record of them (used to rebuild state that belongs to a partition, and
    to hand over what belongs to partitions gone elsewhere). An exception is the hook's own
    business: it should retry until it succeeds or the process stops."""

    partitions_move: bool = False
    """Whether the group can move this consumer's partitions to another process (Kafka: a
    member joins or leaves), so state kept per partition must follow them. False where each
    process has a fixed share (the embedded log)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Join the group (if any) and get partitions. May block until the group is formed.

        Raises ``LogUnavailable`` when the broker cannot be reached."""

    @abc.abstractmethod
    async def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        """Return up to ``max_records`` records, waiting at most ``timeout`` s; [] when none."""

    @abc.abstractmethod
    async def commit(self, records: list[Record]) -> None:
        """Mark ``records`` (and everything before them on their partitions) as processed.

        Must be called with records from ``poll`` in poll order; durable once it returns.
        Raises ``CommitFailed`` when this consumer no longer owns one of their partitions
        (after a rebalance or ``close``): never silently skips the commit."""

    def release(self) -> None:
        """The caller is done with the records it polled: handled and committed, or left for
        the partitions' next owner. A group rebalance waits for this before it takes the
        partitions away (Kafka: up to ``REVOKE_WAIT``), so a batch in hand is never handled by
        two members at once. Adapters without rebalances ignore it."""

    def batch_current(self) -> bool:
        """Whether the records polled last are still this consumer's to handle: False once its
        group has gone on without it — the rebalance stopped waiting for the batch in hand
        (``release``), or the member was expelled (heartbeats missed for the session timeout)
        or left (a batch longer than the poll interval). Their partitions' next owner handles
        them then: a handler must start no new effect of them (``consumer_loop.BatchLost``),
        and the loop commits nothing of them. An adapter whose answer turns False must restart
        those partitions from their last commit before a poll returns their records again, or
        the next commit would pass over them (Kafka: the group's rejoin, which always follows,
        does). Adapters without rebalances: always True."""
        return True

    @property
    def assignment_continues(self) -> bool:
        """Read by ``on_assigned``: whether this member's previous assignment was in the group's
        generation just before this one, so a partition it had then and has again was nobody
        else's meanwhile. False for the first assignment, after an expulsion, and after a
        rebalance that gave this member nothing. Adapters that assign statically: True."""
        return True

    def owns(self, topic: str, partition: int) -> bool:
        """Whether ``partition`` of ``topic`` is this consumer's now (a group may have moved it
        since its records were polled). Adapters that assign statically: always True."""
        return True

    @property
    def assigned(self) -> bool:
        """True while the group has given this consumer its share of the partitions (possibly
        none, when it has more members than partitions) and its ``on_assigned`` hook has ended;
        False before the first assignment, while the hook runs, and between a revocation and the
        next. Adapters that assign statically: always True."""
        return True

    def take_share(self, index: int, count: int) -> None:
        """Before ``start``: consume only the partitions ``p`` with ``p % count == index`` (static
        membership, for several processes of one group on the embedded log). Kafka's group
        protocol shares the partitions itself, so adapters with one may ignore it."""

    @abc.abstractmethod
    async def caught_up(self) -> bool:
        """True once this consumer has read everything that was on its partitions when it started."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Leave the group. Uncommitted records will be delivered again to the next member."""


class EventLog(abc.ABC):
    """The port. Capabilities some adapters lack are declared here with a flag and a default,
    so callers ask the flag (or call the method and get its documented default), never probe
    the adapter with ``hasattr``."""

    end_offsets_local: bool = False
    """True when ``end_offsets`` only reads local storage (never waits on a network), so it
    needs no deadline: the send hot path calls it on every request."""
    keyed_lookups: bool = False
    """True when ``by_key`` finds records (the embedded log has an index on keys; Kafka has none)."""
    local_sql: bool = False
    """True when ``read`` and ``append_guarded`` work: the log is a SQL database this process
    can read and write inside the appends' own transaction (the embedded log)."""

    @property
    def local_file(self) -> Path | None:
        """The file holding the log when it is one on this machine (retention sweeps it), else None."""
        return None

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect / open storage. Raises ``LogUnavailable`` if the broker or the storage is
        unreachable."""

    @abc.abstractmethod
    async def append(self, topic: str, key: str | None, value: bytes,
                     headers: dict[str, str] | None = None) -> tuple[int, int]:
        """Append durably and return ``(partition, offset)``. Raises on failure (nothing acked):
        ``LogNotStarted`` before ``start``, ``LogUnavailable`` (``LogTimeout``: maybe written
        later) when the log is down or slow, ``LogRefused`` when it refuses the record."""

    async def append_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> list[tuple[int, int]]:
        """Append several records; returns only once all are durable. Adapters may batch.
        Raises as ``append``."""
        import asyncio

        return list(await asyncio.gather(*(self.append(topic, k, v) for k, v in items)))

    async def append_guarded(self, topic: str, items: Sequence[tuple[str | None, bytes]],
                             guard: Guard[V]) -> tuple[V, list[tuple[int, int]]]:
        """Only when ``local_sql``: in the appends' own write transaction, ``guard(connection)``
        returns a verdict whose ``chosen`` (a boolean per item) says which items are appended.
        Returns ``(verdict, positions of those chosen)`` once durable; raises as ``append``,
        re-raises what the guard raised (nothing of its job written), and ``LogUnsupported``
        on an adapter without ``local_sql``."""
        raise LogUnsupported(f"{type(self).__name__} has no guarded appends")

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Only when ``local_sql``: ``query(connection)`` on this process's reader connection, on
        the caller's thread (it blocks: small reads only); it sees every commit made so far by
        any process. Raises ``LogUnsupported`` on an adapter without ``local_sql``."""
        raise LogUnsupported(f"{type(self).__name__} has no local reads")

    def by_key(self, topic: str, key: str, limit: int = 50) -> list[Record]:
        """The newest ``limit`` records of ``key`` on ``topic``, newest first, when
        ``keyed_lookups``; [] on an adapter without a key index (callers fall back to another
        source). Blocks briefly (an index read)."""
        return []

    async def ping(self) -> bool:
        """True when the log answers now (Kafka: cluster metadata from a broker; the embedded
        log: its writer is running). Adapters without a cheaper probe answer True once started."""
        return True

    def writable(self, within: float = 15.0) -> bool:
        """False while the latest append failed less than ``within`` seconds ago (only the
        append deadline, ``shared/log/deadline.py``, keeps that record; the adapters say True)."""
        return True

    @abc.abstractmethod
    def scan(self, topic: str, partition: int, start: int = 0,
             since_ms: int | None = None) -> AsyncGenerator[list[Record], None]:
        """Batches of the records of one partition from offset ``start`` (or the first record
        appended at or after ``since_ms``, whichever is later) up to its end when the scan
        began (at least; records appended during the scan may come too); no group, nothing
        committed. Raises ``LogUnavailable`` on an unreachable log."""

    @abc.abstractmethod
    async def partition_count(self, topic: str) -> int:
        """Partitions of ``topic``. Raises ``LogUnavailable`` on an unreachable log."""

    @abc.abstractmethod
    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition of ``topic``, the offset after its last record, as read *after* the
        call began: every record whose append was acknowledged (in any process) before the
        call is below it (read-your-writes: ``ControlPlane.catch_up``). Never earlier than a
        previous answer. Calling it may wake this process's consumers of ``topic`` at once.
        Adapters make it cheap under load: the embedded log answers from memory unless another
        process committed since its last look; Kafka shares one request among concurrent
        callers (one that started after they all arrived). Raises ``LogUnavailable``."""

    @abc.abstractmethod
    async def committed(self, group: str, topic: str) -> dict[int, int]:
        """Per partition of ``topic``, the offset consumer ``group`` has committed (the next it
        reads); partitions it never committed are left out. With ``end_offsets``: whether a
        group has handled everything appended before a moment. Raises ``LogUnavailable``."""

    @abc.abstractmethod
    def consumer(self, topics: list[str], group: str | None) -> Consumer:
        """A consumer of ``topics``; see the module docstring for group semantics."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and release resources."""
