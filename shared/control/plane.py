"""The control plane of one process: replays the control topic, follows it live, writes to it.

Read-your-writes across processes (docs/architecture.md): a request that reads control state first calls
``catch_up``, which reads the control log's end *now* and waits until this process's state has
applied up to it; a change answered 2xx anywhere is therefore seen by every later request.
No lost updates: ``change`` records the fields it sets and the version it was decided on;
every process merges it by the same rules (shared/control/merge.py)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from shared import audit, events as ev
from shared import failpoints
from shared.consumer_loop import FOLLOW, consume
from shared.control.errors import ChangeRefused, ControlBehind
from shared.control.merge import Outcome
from shared.control.state import ControlState, entity_key
from shared.log.port import Consumer, EventLog, Record

log = logging.getLogger(__name__)
ANCHOR_TRIES = 5  # anchors written in a row while other changes of the key keep landing between


class ControlPlane:
    def __init__(self, event_log: EventLog, catch_up_timeout: float = 3.0):
        self.log = event_log
        self.state = ControlState()
        self.ready = asyncio.Event()
        self.catch_up_timeout = catch_up_timeout
        self._task: asyncio.Task[None] | None = None
        self._consumer: Consumer | None = None
        self._stop = asyncio.Event()  # set by ``close``: the follower stops
        self._written: dict[int, int] = {}
        self._applied = asyncio.Event()  # set (and replaced) each time the follower applied records
        self._waiting: dict[str, asyncio.Future[Outcome | None]] = {}  # event id → outcome, for changes this process wrote

    async def start(self) -> None:
        """Replay the whole control topic (blocks until caught up), then follow it in the background."""
        self._consumer = consumer = self.log.consumer([ev.Topic.CONTROL], group=None)
        await consumer.start()
        while True:
            self._apply(await consumer.poll(max_records=5000, timeout=0.2))
            if await consumer.caught_up():
                break
        self.ready.set()
        self._task = asyncio.create_task(self._follow(), name="control-follow")

    async def _follow(self) -> None:
        """Follow the control topic live, in the one consumer loop as a group-less follower
        that never commits; an unreachable log is waited out while this process serves the
        state it has (``FOLLOW``)."""
        assert self._consumer is not None  # started by ``start``
        await consume(self._consumer, self._apply_late, self._stop, FOLLOW)

    async def _apply_late(self, records: list[Record]) -> None:
        if records and failpoints.delay("control.follow"):  # tests: a process that reads late
            await asyncio.sleep(failpoints.delay("control.follow"))
        self._apply(records)

    def _apply(self, records: list[Record]) -> None:
        for rec in records:
            event: ev.ControlRecord | None = None
            outcome: Outcome | None = None
            try:
                event = ev.decode(rec.value)
                outcome = self.state.apply(event, rec.offset)
            except Exception:
                log.exception("skipping unreadable control record at %s/%s", rec.partition, rec.offset)
            self.state.advance(rec.partition, rec.offset)
            waiter = self._waiting.pop(event.id, None) if event is not None else None
            if waiter is not None and not waiter.done():
                waiter.set_result(outcome)
        if records:
            old, self._applied = self._applied, asyncio.Event()
            old.set()

    async def catch_up(self) -> None:
        """Wait until this process's state has applied the control log up to its end as read
        now, after the caller arrived (read-your-writes). Returns at once when it already has
        (on the embedded log: one ``PRAGMA data_version`` read when nothing changed). Raises
        ``ControlBehind`` when the end cannot be read or reached within the catch-up timeout."""
        try:
            ends = await self.log.end_offsets(ev.Topic.CONTROL)  # bounded by the log (deadline.py)
            if self.state.reached(ends):
                return  # the usual case, without a timer
            async with asyncio.timeout(self.catch_up_timeout):
                while not self.state.reached(ends):
                    await self._applied.wait()
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise ControlBehind("the event log is unavailable: this process cannot read the latest management "
                                "changes; nothing was done, safe to retry (with the same Idempotency-Key)") from exc

    async def save(self, event: ev.ControlRecord) -> ev.ControlRecord:
        """Append a whole-state record (a create, or a state computed from nothing older: see
        ``change`` for changes of an existing entity) durably, then apply it locally
        (read-your-writes on this process). A whole state supersedes every earlier record of
        its key, so applying it before the follower has read those is safe. Made on behalf of
        someone (``audit.current``), it is appended together with its audit entry (one append:
        one transaction on the embedded log)."""
        key = entity_key(event)
        ctx = audit.current()
        entry = audit.entry_for(self.state.entity(key), event, ctx) if ctx is not None else None
        items = [(key, ev.encode(event))] + ([(entity_key(entry), ev.encode(entry))] if entry is not None else [])
        positions = await self.log.append_many(ev.Topic.CONTROL, items)
        partition, offset = positions[0]
        self.state.apply(event, offset)
        if entry is not None:
            self.state.apply(entry)  # readable here at once; the follower's copy is recognised by its id
        # Not state.advance: records before ``offset`` may not have been read yet
        for partition, offset in positions:
            self._written[partition] = max(self._written.get(partition, 0), offset + 1)
        return event

    async def change(self, current: ev.ControlRecord, **fields: Any) -> ev.ControlRecord:
        """Set ``fields`` of the entity ``current`` (as read from this process's state), leaving
        every other field as it is in the log, whatever this process has seen. Returns the
        entity once the change is applied here (a record with ``deleted`` set after a delete).

        Raises ``ChangeRefused``: 409 when one of ``fields`` was set by another request since
        ``current`` was read, 404 when the entity was deleted meanwhile; ``ControlBehind`` when
        the change is durable but this process did not read it back within the timeout (its
        outcome is then unknown here); the log's errors when the append fails."""
        key = entity_key(current)
        latest = self.state.entity(key)
        if latest is None or latest.deleted:
            raise ChangeRefused(404, f"{_what(key)} not found")
        ctx = audit.current()
        based_on = self.state.position_of(current)
        event = latest.model_copy(update={**fields, "id": ev.new_id(), "time": ev.utcnow(), "changed": sorted(fields),
                                          "based_on": -1 if based_on is None else based_on,
                                          "versions": self.state.versions_of(key)})
        outcome = await self._append_and_wait(key, event)
        if outcome is not Outcome.WHOLE:
            await self._anchor(key)
        if outcome is Outcome.CONFLICT:
            raise ChangeRefused(409, f"{_what(key)} was changed by another request at the same time "
                                     f"({', '.join(sorted(fields))}); read it again and retry")
        if outcome is Outcome.GONE:
            raise ChangeRefused(404, f"{_what(key)} not found")
        result = self.state.entity(key) or event
        if outcome and ctx is not None:
            await self._audit(audit.entry_for(latest, result, ctx, only=sorted(fields)))
        return result

    async def _audit(self, entry: ev.AuditEntry | None) -> None:
        """Append the audit entry of a change that took effect. It follows the change (whose
        outcome it needs): a process killed between the two leaves that change without an
        entry. Failures are logged, not raised: the change itself is done."""
        if entry is None:
            return
        try:
            partition, offset = await self.log.append(ev.Topic.CONTROL, entity_key(entry), ev.encode(entry))
        except Exception:
            log.exception("control: the audit entry of a change could not be appended")
            return
        self.state.apply(entry)
        self._written[partition] = max(self._written.get(partition, 0), offset + 1)

    async def _append_and_wait(self, key: str, event: ev.ControlRecord) -> Outcome | None:
        """Append ``event`` and wait for the follower to apply it: its outcome here, which is
        every process's (they apply the same records by the same rules)."""
        waiter: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._waiting[event.id] = waiter
        try:
            partition, offset = await self.log.append(ev.Topic.CONTROL, key, ev.encode(event))
            self._written[partition] = max(self._written.get(partition, 0), offset + 1)
            async with asyncio.timeout(self.catch_up_timeout):
                return await waiter
        except TimeoutError as exc:
            raise ControlBehind("the change is saved, but this process has not read it back yet; "
                                "read it again before retrying") from exc
        finally:
            self._waiting.pop(event.id, None)

    async def _anchor(self, key: str) -> None:
        """Append the key's whole state as held now, changing nothing, until such a record is
        the key's latest one: compaction keeps only the latest record per key, and the change
        just applied (merged, or refused) does not hold the whole state (merge.py). Failures
        are logged, not raised: the change itself is already decided."""
        try:
            for _ in range(ANCHOR_TRIES):
                held = self.state.entity(key)
                if held is None:
                    return
                based_on = self.state.position_of(held)
                anchor = held.model_copy(update={"id": ev.new_id(), "time": ev.utcnow(), "changed": [],
                                                 "based_on": -1 if based_on is None else based_on,
                                                 "versions": self.state.versions_of(key)})
                if await self._append_and_wait(key, anchor) is Outcome.WHOLE:
                    return
            log.warning("control: %s has no record of its whole state after %d anchors", key, ANCHOR_TRIES)
        except Exception:
            log.exception("control: could not append an anchor of %s (a later change of it writes one)", key)

    def position(self) -> dict[int, int]:
        """The control-log position this process's decisions rest on: per partition, past
        every record it has read and every change it has written itself (read-your-writes).
        A send request carries it; a relay waits until its own state has read that far."""
        merged = dict(self.state.positions)
        for p, off in self._written.items():
            merged[p] = max(merged.get(p, 0), off)
        return merged

    async def suppress(self, workspace_id: str, service_id: str, email: str, reason: str, detail: str | None,
                       source_email_id: str | None) -> ev.SuppressionSaved | None:
        """Add ``email`` to the service's suppression list unless it is on it already;
        returns the entry saved (durable), or None."""
        if self.state.suppression(service_id, email):
            return None
        entry = ev.SuppressionSaved(workspace_id=workspace_id, service_id=service_id, email=email.lower(),
                                    reason=reason, detail=detail, source_email_id=source_email_id,
                                    created_at=ev.utcnow())
        await self.save(entry)
        return entry

    async def close(self) -> None:
        self._stop.set()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._consumer:
            await self._consumer.close()


def _what(key: str) -> str:
    """'service 1f…' for 'service:1f…' (suppressions: 'suppression of a@b.c')."""
    kind, _, ident = key.partition(":")
    if kind == "suppression":
        return f"suppression of {ident.partition(':')[2]}"
    return f"{kind.replace('_', ' ')} {ident}"
