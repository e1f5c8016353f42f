"""Fail fast: every append to the event log either is durable within
``POSTLINE_LOG_APPEND_TIMEOUT`` seconds or raises ``LogTimeout`` (a ``LogUnavailable``).

Without a bound, an append to a Kafka broker that is down waits for aiokafka's request
timeout (40 s by default): every API request held that long before its 503, and every
consumer step with it. ``open_log`` wraps each adapter in ``DeadlineLog``; the Kafka
producer's own request timeout is set to the same value, so its internal waits give up
together with the caller.

A timed-out append is not known to have failed: the producer may still deliver the record
once the broker is back. Callers treat it as "not acknowledged" (the API answers 503: safe
to retry with the same Idempotency-Key), never as "not written"; consumers deduplicate on
event ids, so a late record is harmless."""
from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import AsyncGenerator, Awaitable, Callable, Sequence, TypeVar

from shared.backoff_log import DEPENDENCIES
from shared.log.port import V, Consumer, EventLog, Guard, LogRecordTooLarge, LogTimeout, LogUnavailable, Record

__all__ = ["DeadlineLog", "LogTimeout", "LogUnavailable"]  # the port's errors, imported from here by older callers

T = TypeVar("T")
DEPENDENCY = "event_log"
RECENT_FAILURE = 15.0  # seconds a failed append keeps the API unready unless an append succeeds


class DeadlineLog(EventLog):
    """An ``EventLog`` whose appends are bounded in time; every other method is the adapter's,
    forwarded one by one (no attribute passthrough: what a caller may use is the port)."""

    def __init__(self, inner: EventLog, timeout: float):
        self.inner, self.timeout = inner, timeout
        self._last_ok = self._last_failed = float("-inf")  # monotonic times of the last append outcomes
        self.end_offsets_local = inner.end_offsets_local
        self.keyed_lookups = inner.keyed_lookups
        self.local_sql = inner.local_sql

    @property
    def local_file(self) -> Path | None:
        return self.inner.local_file

    async def start(self) -> None:
        await self.inner.start()

    async def append(self, topic: str, key: str | None, value: bytes,
                     headers: dict[str, str] | None = None) -> tuple[int, int]:
        """As ``EventLog.append``; raises ``LogTimeout`` after ``timeout`` seconds."""
        return await self._bounded(self.inner.append(topic, key, value, headers))

    async def append_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> list[tuple[int, int]]:
        """As ``EventLog.append_many``, all of it within one ``timeout``."""
        return await self._bounded(self.inner.append_many(topic, items))

    async def append_guarded(self, topic: str, items: Sequence[tuple[str | None, bytes]],
                             guard: Guard[V]) -> tuple[V, list[tuple[int, int]]]:
        """As ``EventLog.append_guarded``, within ``timeout``."""
        return await self._bounded(self.inner.append_guarded(topic, items, guard))

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """As ``EventLog.read`` (a local read: not bounded)."""
        return self.inner.read(query)

    def by_key(self, topic: str, key: str, limit: int = 50) -> list[Record]:
        """As ``EventLog.by_key`` (a local read: not bounded)."""
        return self.inner.by_key(topic, key, limit)

    async def _bounded(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):  # no extra task per append (unlike wait_for)
                result = await call
        except asyncio.TimeoutError as exc:
            self._last_failed = time.monotonic()
            timed_out = LogTimeout(f"no acknowledgement of an append within {self.timeout:g} s")
            DEPENDENCIES.failed(DEPENDENCY, timed_out)
            raise timed_out from exc
        except LogRecordTooLarge:  # the record's fault, not the log's: it stays writable
            raise
        except Exception as exc:
            self._last_failed = time.monotonic()
            DEPENDENCIES.failed(DEPENDENCY, exc)
            raise
        self._last_ok = time.monotonic()
        DEPENDENCIES.ok(DEPENDENCY)
        return result

    def writable(self, within: float = RECENT_FAILURE) -> bool:
        """False while the latest append failed less than ``within`` seconds ago (the log
        may answer metadata requests and still refuse writes); True again after a
        successful append, or once that failure is older (so traffic comes back to test it)."""
        return self._last_ok >= self._last_failed or time.monotonic() - self._last_failed > within

    async def ping(self) -> bool:
        """The adapter's ``ping`` within ``timeout``; False when it fails. Never raises."""
        try:
            ok = bool(await asyncio.wait_for(self.inner.ping(), self.timeout))
        except Exception as exc:
            DEPENDENCIES.failed(DEPENDENCY, exc)
            return False
        if ok:
            DEPENDENCIES.ok(DEPENDENCY)
        return ok

    def consumer(self, topics: list[str], group: str | None) -> Consumer:
        return self.inner.consumer(topics, group)

    def scan(self, topic: str, partition: int, start: int = 0,
             since_ms: int | None = None) -> AsyncGenerator[list[Record], None]:
        """The adapter's ``scan`` (reads are not bounded here: a ledger rebuild must finish)."""
        return self.inner.scan(topic, partition, start, since_ms)

    async def partition_count(self, topic: str) -> int:
        return await self.inner.partition_count(topic)

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """As ``EventLog.end_offsets``; raises ``LogTimeout`` after ``timeout`` seconds (not
        bounded when the adapter's answer is local: a timer per call would cost more than the
        read). Not counted as an append (``writable`` and the dependency's state are the appends')."""
        if self.inner.end_offsets_local:
            return await self.inner.end_offsets(topic)
        try:
            async with asyncio.timeout(self.timeout):
                return await self.inner.end_offsets(topic)
        except asyncio.TimeoutError as exc:
            raise LogTimeout(f"no end offsets of {topic} within {self.timeout:g} s") from exc

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        """As ``EventLog.committed``; raises ``LogTimeout`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self.inner.committed(group, topic)
        except asyncio.TimeoutError as exc:
            raise LogTimeout(f"no committed offsets of {group} on {topic} within {self.timeout:g} s") from exc

    async def close(self) -> None:
        await self.inner.close()
