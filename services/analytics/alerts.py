"""Rate alerts (docs/analytics.md): every ``POSTLINE_ALERT_INTERVAL`` seconds, each service's bounce and
complaint rates over the last 24 h against its thresholds (``ServiceSaved.alert_*``), and an
``alert`` event on ``email.events`` when one crosses: ``raised`` once when a rate goes over,
``cleared`` once when it is back at or under (or the window has no mail left).

Idempotent across restarts and processes: the current state is read back from the store
(the latest ``alert`` event of the service and kind), and ids are deterministic — an episode's
key is derived from the service, the kind and the episode before it (``episode_key``), its
events ``derived_id(key, state)`` — so two analytics processes, or one restarted, that see the
same crossing append the same event, which the store and webhook receivers (``webhook-id``)
take once, whatever their clocks say (a key from the hour of the crossing made two processes
on either side of an hour's start raise one crossing twice). Alerts emitted but not loaded
yet (the loader's batch lag) are remembered until the store shows them, so a short interval
does not emit them twice."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from shared import events as ev
from shared.control.plane import ControlPlane
from shared.log.port import EventLog
from shared.store import insights
from shared.store.port import AnalyticsStore, StoreError

log = logging.getLogger(__name__)
WINDOW = timedelta(hours=24)
KINDS = ("bounce_rate", "complaint_rate")


@dataclass(frozen=True)
class Reading:
    """One rate of one service: ``value`` (None below the minimum volume) against ``threshold``."""

    kind: str
    value: float | None
    threshold: float
    volume: int

    @property
    def over(self) -> bool:
        return self.value is not None and self.value > self.threshold


def readings(svc: ev.ServiceSaved, counts: dict[str, int]) -> list[Reading]:
    """The service's two rates: bounces over attempts that ended (delivered + bounced),
    complaints over deliveries; None under the service's minimum volume."""
    attempts = counts["delivered"] + counts["bounced"]
    enough = attempts >= svc.alert_min_volume
    bounce = counts["bounced"] / attempts if enough else None
    complaint = counts["complained"] / counts["delivered"] if enough and counts["delivered"] else None
    return [Reading("bounce_rate", bounce, svc.alert_bounce_rate, attempts),
            Reading("complaint_rate", complaint, svc.alert_complaint_rate, counts["delivered"])]


@dataclass
class AlertWatch:
    log: EventLog
    control: ControlPlane
    store: AnalyticsStore
    interval: float = 60.0
    _pending: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # emitted, not loaded yet

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate every ``interval`` seconds until ``stop``; a store outage skips a round."""
        while not stop.is_set():
            try:
                await self.evaluate()
            except StoreError as exc:
                log.warning("alerts: analytics store unavailable (%s); next round in %.0f s", exc, self.interval)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass

    async def evaluate(self, now: datetime | None = None) -> list[ev.Alert]:
        """One round: the alerts that changed state, appended to ``email.events``."""
        now = now or ev.utcnow()
        services = [s for s in self.control.state.services.values() if not s.deleted]
        ids = [s.service_id for s in services]
        counts = await insights.rates(self.store, ids, now - WINDOW)
        states = await insights.alert_states(self.store, ids)
        emitted = []
        for svc in services:
            for reading in readings(svc, counts[svc.service_id]):
                alert = self._transition(svc, reading, self._current(states, svc.service_id, reading.kind), now)
                if alert is not None:
                    await self.log.append(ev.Topic.EVENTS, alert.email_id, ev.encode(alert))
                    self._pending[(svc.service_id, reading.kind)] = alert.model_dump(mode="json")
                    emitted.append(alert)
        return emitted

    def _current(self, states: dict[tuple[str, str], dict[str, Any]], service_id: str, kind: str) -> dict[str, Any] | None:
        """The latest alert of the service and kind: the store's, or one emitted since that it has not loaded yet."""
        stored, mine = states.get((service_id, kind)), self._pending.get((service_id, kind))
        if mine is None or (stored is not None and stored["id"] == mine["id"]):
            self._pending.pop((service_id, kind), None)
            return stored
        return mine

    @staticmethod
    def _transition(svc: ev.ServiceSaved, reading: Reading, last: dict[str, Any] | None, now: datetime) -> ev.Alert | None:
        raised = last is not None and last["state"] == "raised"
        if reading.over and not raised:
            return _alert(svc, reading, episode_key(svc.service_id, reading.kind, last), "raised", now)
        if raised and not reading.over and (reading.value is not None or reading.volume == 0) and last is not None:
            return _alert(svc, reading, last["email_id"], "cleared", now)
        return None


def episode_key(service_id: str, kind: str, last: dict[str, Any] | None) -> str:
    """The key of the episode that follows ``last`` (the latest alert of the service and kind,
    cleared; None before the first): every process that knows the same last alert names the
    new episode alike."""
    return ev.derived_id("alert", service_id, kind, "", "after", last["id"] if last is not None else "")


def _alert(svc: ev.ServiceSaved, reading: Reading, key: str, state: Literal["raised", "cleared"], now: datetime) -> ev.Alert:
    what = reading.kind.replace("_", " ")
    value = f"{reading.value:.2%}" if reading.value is not None else "n/a"
    verb = "is over" if state == "raised" else "is back under"
    return ev.Alert(id=ev.derived_id(key, state), time=now, workspace_id=svc.workspace_id, service_id=svc.service_id,
                    email_id=key, kind=reading.kind, state=state,
                    value=reading.value, threshold=reading.threshold,
                    message=f"{what} {value} over the last 24 h {verb} the threshold {reading.threshold:.2%} "
                            f"({reading.volume} messages)")
