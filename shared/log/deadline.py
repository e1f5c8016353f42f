"""Fail fast: every append to the event log either is durable within
``POSTLINE_LOG_APPEND_TIMEOUT`` seconds or raises ``LogUnavailable``.

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
import time

from shared.backoff_log import DEPENDENCIES
from shared.log.port import Consumer, EventLog

DEPENDENCY = "event_log"
RECENT_FAILURE = 15.0  # seconds a failed append keeps the API unready unless an append succeeds


class LogUnavailable(TimeoutError):
    """The event log did not acknowledge an append in time (or refused it)."""


class DeadlineLog(EventLog):
    """An ``EventLog`` whose appends are bounded in time; everything else is the adapter's."""

    def __init__(self, inner: EventLog, timeout: float):
        self.inner, self.timeout = inner, timeout
        self._last_ok = self._last_failed = float("-inf")  # monotonic times of the last append outcomes

    @property
    def end_offsets_local(self) -> bool:
        return self.inner.end_offsets_local

    def __getattr__(self, name):  # adapter-specific attributes (e.g. the SQLite path)
        return getattr(self.inner, name)

    async def start(self) -> None:
        await self.inner.start()

    async def append(self, topic, key, value, headers=None) -> tuple[int, int]:
        """As ``EventLog.append``; raises ``LogUnavailable`` after ``timeout`` seconds."""
        return await self._bounded(self.inner.append(topic, key, value, headers))

    async def append_many(self, topic, items) -> list[tuple[int, int]]:
        """As ``EventLog.append_many``, all of it within one ``timeout``."""
        return await self._bounded(self.inner.append_many(topic, items))

    async def append_guarded(self, topic, items, guard):
        """The embedded log's guarded append (shared/log/sqlite.py), within ``timeout``."""
        return await self._bounded(self.inner.append_guarded(topic, items, guard))

    def read(self, query):
        """The embedded log's read on its own tables (shared/log/sqlite.py)."""
        return self.inner.read(query)

    async def _bounded(self, call):
        try:
            async with asyncio.timeout(self.timeout):  # no extra task per append (unlike wait_for)
                result = await call
        except asyncio.TimeoutError as exc:
            self._last_failed = time.monotonic()
            timed_out = LogUnavailable(f"no acknowledgement of an append within {self.timeout:g} s")
            DEPENDENCIES.failed(DEPENDENCY, timed_out)
            raise timed_out from exc
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
        """True when the log answers now (Kafka: cluster metadata from a broker; the embedded
        log: its writer is running), within ``timeout``. Never raises."""
        probe = getattr(self.inner, "ping", None)
        if probe is None:
            return True
        try:
            ok = bool(await asyncio.wait_for(probe(), self.timeout))
        except Exception as exc:
            DEPENDENCIES.failed(DEPENDENCY, exc)
            return False
        if ok:
            DEPENDENCIES.ok(DEPENDENCY)
        return ok

    def consumer(self, topics, group) -> Consumer:
        return self.inner.consumer(topics, group)

    def scan(self, topic, partition, start=0, since_ms=None):
        """The adapter's ``scan`` (reads are not bounded here: a ledger rebuild must finish)."""
        return self.inner.scan(topic, partition, start, since_ms)

    async def partition_count(self, topic) -> int:
        return await self.inner.partition_count(topic)

    async def end_offsets(self, topic) -> dict[int, int]:
        """As ``EventLog.end_offsets``; raises ``LogUnavailable`` after ``timeout`` seconds (not
        bounded when the adapter's answer is local: a timer per call would cost more than the
        read). Not counted as an append (``writable`` and the dependency's state are the appends')."""
        if self.inner.end_offsets_local:
            return await self.inner.end_offsets(topic)
        try:
            async with asyncio.timeout(self.timeout):
                return await self.inner.end_offsets(topic)
        except asyncio.TimeoutError as exc:
            raise LogUnavailable(f"no end offsets of {topic} within {self.timeout:g} s") from exc

    async def close(self) -> None:
        await self.inner.close()
