"""Kafka claims: records on ``postline.idempotency`` keyed ``service|key``, so the claims of
one key are on one partition, in one order every replica reads. Each replica follows the
topic from its beginning (started at its first request with a key) and applies every record
with ``claims.apply``; a request appends its claim, reads up to it, and holds the key iff
the state just after its own record names it.

The topic is compacted (and records go after 25 h), so the newest record of a key must carry
its answer: a claim that lands after the key's done record (its replica had not read the
done yet) is followed by a copy of the done."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from services.api.idempotency.claims import Claim, Claims, apply, done
from shared import events as ev
from shared.log.deadline import LogUnavailable
from shared.log.port import Consumer, EventLog, Record

log = logging.getLogger(__name__)
PRUNE_EVERY = 600.0


class LogClaims(Claims):
    def __init__(self, log_: EventLog, reach_timeout: float) -> None:
        """``reach_timeout``: seconds a request waits for this replica to read its own claim back."""
        self.log, self.reach_timeout = log_, reach_timeout
        self._states: dict[tuple[str, str], Claim] = {}
        self._done_at: dict[tuple[str, str], int] = {}  # offset of the record that made the key done
        self._pos: dict[int, int] = {}  # partition → next offset to read
        self._changed = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._consumer: Consumer | None = None
        self._task: asyncio.Task | None = None
        self._pruned = time.time()

    async def _follow_topic(self) -> None:
        async with self._start_lock:
            if self._task is None:
                consumer = self.log.consumer([ev.Topic.IDEMPOTENCY], group=None)
                await consumer.start()
                self._consumer = consumer
                self._task = asyncio.create_task(self._follow(), name="idempotency-follow")

    async def look(self, scope: str, key: str) -> Claim | None:
        if self._task is None:
            await self._follow_topic()
        state = self._states.get((scope, key))
        return state if state is not None and state.live(time.time()) else None

    async def change(self, scope: str, key: str, change: dict) -> Claim | None:
        if self._task is None:
            await self._follow_topic()
        k = (scope, key)
        part, off = await self.log.append(ev.Topic.IDEMPOTENCY, f"{scope}|{key}", json.dumps(change).encode())
        if change["kind"] != "claim":
            return None
        await self._reach(part, off)
        state = self._states.get(k)
        if state is not None and state.response is not None and self._done_at.get(k, off) < off:
            await self.log.append(ev.Topic.IDEMPOTENCY, f"{scope}|{key}", json.dumps(
                done(state.owner, state.body_hash, state.at, state.response, state.since)).encode())
        return state

    async def _reach(self, part: int, off: int) -> None:
        deadline = time.monotonic() + self.reach_timeout
        while self._pos.get(part, 0) <= off:
            waiter, left = self._changed, deadline - time.monotonic()
            if left <= 0:
                raise LogUnavailable(f"the claim at {ev.Topic.IDEMPOTENCY}/{part}@{off} was not read back in time")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(waiter.wait(), left)

    async def changed(self, scope: str, key: str, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), max(0.0, timeout))

    async def _follow(self) -> None:
        while True:
            try:
                assert self._consumer is not None  # started before following
                records = await self._consumer.poll(max_records=2000, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker is away: claims wait (bounded) until it is back
                log.debug("idempotency topic poll failed", exc_info=True)
                await asyncio.sleep(1)
                continue
            self._apply(records)

    def _apply(self, records: list[Record]) -> None:
        for rec in records:
            if rec.offset < self._pos.get(rec.partition, 0):
                continue  # some brokers (tansu) may answer from earlier
            self._pos[rec.partition] = rec.offset + 1
            try:
                # a record without a key raises AttributeError here: it is skipped as unreadable
                change, k = json.loads(rec.value), tuple(rec.key.split("|", 1))  # type: ignore[union-attr]
                before = self._states.get(k)
                after = apply(before, change)
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("skipping an unreadable idempotency record at %s/%s", rec.partition, rec.offset)
                continue
            self._keep(k, before, after, rec.offset)
        if time.time() - self._pruned > PRUNE_EVERY:
            self._prune()
        old, self._changed = self._changed, asyncio.Event()  # wake every waiter once per batch
        old.set()

    def _keep(self, k: tuple[str, str], before: Claim | None, after: Claim | None, offset: int) -> None:
        if after is None:
            self._states.pop(k, None)
            self._done_at.pop(k, None)
            return
        self._states[k] = after
        if after.response is not None and (before is None or before.response is None or not before.live(after.at)):
            self._done_at[k] = offset

    def _prune(self) -> None:
        now = self._pruned = time.time()
        for k in [k for k, state in self._states.items() if not state.live(now)]:
            del self._states[k]
            self._done_at.pop(k, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.close()
