"""Service-wide counters over Kafka: each replica publishes its counts, every replica adds them.

A replica decides on its own counts plus the latest counts every other replica published
(no replica count anywhere: a new replica is simply one more publisher). What it accepts
is counted locally at once and published every ``flush_interval`` seconds as one record
per changed slot — key ``service|replica|scope|slot``, value the slot's *total* (not a
delta): reading a record twice changes nothing, and the topic can be compacted down to one
record per live slot. A replica's id is new at every start; what an earlier incarnation
published is read back like any other replica's, so a restart forgets nothing.

Overshoot: a replica does not yet see what the others accepted in the last flush interval
plus one fetch (~0.1 + 0.1 s), so the total may pass the limit by that much traffic of the
other replicas: measured and written down in docs/rate-limits.md."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence

from shared import events as ev
from shared.log.follow import follow, read_up_to_now
from shared.log.port import Consumer, EventLog, LogRecordTooLarge, Record
from shared.quota.port import Quota, judge_as_one
from shared.quota.window import Counted, Decision, Take, Window, decide

log = logging.getLogger(__name__)


class SlotTable:
    """Units per (service, scope) → publisher → slot."""

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str], dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))

    def set(self, service_id: str, scope: str, publisher: str, slot: int, units: int) -> None:
        self._slots[(service_id, scope)][publisher][slot] = units

    def add(self, service_id: str, scope: str, publisher: str, slot: int, units: int) -> int:
        slots = self._slots[(service_id, scope)][publisher]
        slots[slot] = slots.get(slot, 0) + units
        return slots[slot]

    def units(self, service_id: str, scope: str, publisher: str, slot: int) -> int:
        return self._slots[(service_id, scope)][publisher].get(slot, 0)

    def live(self, service_id: str, w: Window, now: float) -> dict[int, int]:
        """Live slots of the window, every publisher summed (expired ones are dropped here)."""
        first, out = w.first_live(now), dict[int, int]()
        for slots in self._slots.get((service_id, w.scope), {}).values():
            for slot in [s for s in slots if s < first]:
                del slots[slot]
            for slot, units in slots.items():
                out[slot] = out.get(slot, 0) + units
        return out


class GossipQuota(Quota):
    def __init__(self, log_: EventLog, flush_interval: float = 0.1):
        self.log, self.flush_interval = log_, flush_interval
        self.me = uuid.uuid4().hex[:12]
        self.table = SlotTable()
        self._dirty: set[tuple[str, str, int]] = set()
        self._consumer: Consumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Read every replica's published counts up to now (bounded), then follow and publish."""
        self._consumer = consumer = self.log.consumer([ev.Topic.QUOTA], group=None)
        await consumer.start()
        await read_up_to_now(consumer, self._apply)
        self._tasks = [asyncio.create_task(follow(consumer, self._apply, "quota topic"), name="quota-follow"),
                       asyncio.create_task(self._publish(), name="quota-publish")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._flush()  # what was accepted since the last flush, for the others
        if self._consumer is not None:
            await self._consumer.close()

    # ------------------------------------------------------------ deciding
    def _counted(self, take: Take, now: float) -> list[Counted]:
        out = []
        for w in take.windows:
            live = self.table.live(take.service_id, w, now)
            out.append(Counted(w, sum(live.values()), min(live) if live else None))
        return out

    def _judge(self, take: Take, now: float) -> Decision:
        def rows(w: Window) -> list[tuple[int, int]]:
            return sorted(self.table.live(take.service_id, w, now).items())

        return decide(take, now, self._counted(take, now), rows)

    def _count(self, take: Take, now: float, sign: int) -> None:
        for w in take.windows:
            slot = w.slot_at(now)
            self.table.add(take.service_id, w.scope, self.me, slot, sign * take.n)
            self._dirty.add((take.service_id, w.scope, slot))

    def _in_order(self, takes: list[Take], now: float) -> tuple[list[Decision], list[Take]]:
        """Each take counted if it fits: the decisions and the takes counted."""
        decisions, counted = [], []
        for take in takes:
            decision = self._judge(take, now)
            if decision.allowed and take.n:
                self._count(take, now, +1)
                counted.append(take)
            decisions.append(decision)
        return decisions, counted

    def _as_one(self, takes: list[Take], now: float) -> tuple[list[Decision], list[Take]]:
        """``judge_as_one``: every take counted, or — any does not fit — none stays counted."""
        decisions = judge_as_one(takes, lambda take: self._judge(take, now), lambda take: self._count(take, now, +1))
        counted = [take for take in takes if take.n]
        if all(d.allowed for d in decisions):
            return decisions, counted
        for take in counted:  # given back before any await: no other request saw them counted
            self._count(take, now, -1)
        return decisions, []

    async def admit(self, topic: str, takes: list[Take], items: Sequence[tuple[str | None, bytes]],
                    all_or_nothing: bool = False) -> list[Decision]:
        now = time.time()
        # no await until the append: decide-and-count is atomic on this replica
        decisions, counted = self._as_one(takes, now) if all_or_nothing else self._in_order(takes, now)
        at = [i for i, (_, d) in enumerate(zip(items, decisions)) if d.allowed]  # the records to append
        try:
            if at:
                await self.log.append_many(topic, [items[i] for i in at])
        except BaseException as exc:
            for take in counted:  # nothing was acknowledged: give the units back
                self._count(take, now, -1)
            if isinstance(exc, LogRecordTooLarge) and exc.index is not None:  # its place in ``items``, not in those appended
                raise LogRecordTooLarge(str(exc), index=at[exc.index]) from exc
            raise
        return decisions

    def peek(self, take: Take) -> Decision:
        return self._judge(take, time.time())

    def tally(self, service_id: str, scope: tuple[str, int, int]) -> tuple[int, int | None]:
        live = self.table.live(service_id, Window(scope[0], scope[1], scope[2], 0), time.time())
        return sum(live.values()), max(live) if live else None

    def usage(self, service_id: str, scopes: list[tuple[str, int, int]]) -> dict[str, int]:
        now = time.time()
        return {scope: sum(self.table.live(service_id, Window(scope, length, slot, 0), now).values())
                for scope, length, slot in scopes}

    # ------------------------------------------------------------ sharing
    async def _publish(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self._flush()
            except Exception:  # the log is down: the counts stay dirty and go with the next flush
                log.debug("quota counts not published", exc_info=True)

    async def _flush(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        records: list[tuple[str | None, bytes]] = []
        for service_id, scope, slot in dirty:
            units = self.table.units(service_id, scope, self.me, slot)
            value = json.dumps({"s": service_id, "p": self.me, "c": scope, "t": slot, "n": units}).encode()
            records.append((f"{service_id}|{self.me}|{scope}|{slot}", value))
        try:
            await self.log.append_many(ev.Topic.QUOTA, records)
        except BaseException:
            self._dirty |= dirty
            raise

    def _apply(self, records: list[Record]) -> None:
        for rec in records:
            try:
                c = json.loads(rec.value)
                if c["p"] != self.me:  # our own counts are already here, and newer
                    self.table.set(c["s"], c["c"], c["p"], int(c["t"]), int(c["n"]))
            except (ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable quota record at %s/%s", rec.partition, rec.offset)
