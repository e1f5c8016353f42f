"""The control plane of one process: replays the control topic, follows it live, writes to it."""
from __future__ import annotations

import asyncio
import logging

from shared import events as ev
from shared import failpoints
from shared.backoff_log import DEPENDENCIES, dependency_of
from shared.control.state import ControlState, entity_key
from shared.log.port import EventLog

log = logging.getLogger(__name__)


class ControlPlane:
    def __init__(self, event_log: EventLog):
        self.log = event_log
        self.state = ControlState()
        self.ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._consumer = None
        self._closing = False
        self._written: dict[int, int] = {}

    async def start(self) -> None:
        """Replay the whole control topic (blocks until caught up), then follow it in the background."""
        self._consumer = self.log.consumer([ev.Topic.CONTROL], group=None)
        await self._consumer.start()
        while True:
            self._apply(await self._consumer.poll(max_records=5000, timeout=0.2))
            if await self._consumer.caught_up():
                break
        self.ready.set()
        self._task = asyncio.create_task(self._follow(), name="control-follow")

    async def _follow(self) -> None:
        while not self._closing:
            try:
                records = await self._consumer.poll(max_records=5000, timeout=1.0)
                if records and failpoints.delay("control.follow"):  # tests: a process that reads late
                    await asyncio.sleep(failpoints.delay("control.follow"))
                self._apply(records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the log is unreachable for a moment: keep serving what we have
                if dependency_of(exc):
                    DEPENDENCIES.failed(dependency_of(exc), exc)  # one line per interval, not per poll
                else:
                    log.exception("control topic poll failed")
                await asyncio.sleep(1)

    def _apply(self, records) -> None:
        for rec in records:
            try:
                self.state.apply(ev.decode(rec.value), rec.offset)
            except Exception:
                log.exception("skipping unreadable control record at %s/%s", rec.partition, rec.offset)
            self.state.advance(rec.partition, rec.offset)

    async def save(self, event: ev.Event) -> ev.Event:
        """Append durably, then apply locally (read-your-writes on this process)."""
        partition, offset = await self.log.append(ev.Topic.CONTROL, entity_key(event), ev.encode(event))
        self.state.apply(event, offset)
        # Not state.advance: records before ``offset`` may not have been read yet
        self._written[partition] = max(self._written.get(partition, 0), offset + 1)
        return event

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
        return await self.save(entry)

    async def close(self) -> None:
        self._closing = True
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._consumer:
            await self._consumer.close()
