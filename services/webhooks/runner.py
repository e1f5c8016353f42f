"""Webhook fan-out: lifecycle events → the outbox (durable, then commit) → deliveries.

Each endpoint gets at most ``PER_ENDPOINT`` requests at once and the whole process at most
``GLOBAL`` — a slow or dead endpoint fills only its own slots, never another endpoint's or
another tenant's. Outcomes: 2xx done; 410 disables the endpoint; 429/503 wait Retry-After;
anything else retries on POSTLINE_WEBHOOK_RETRY_SCHEDULE (~27 h), then the delivery is
failed (replayable). Three messages failing in a row auto-disable the endpoint, counted on
the endpoint itself across every webhooks process (shared/control/webhook_failures.py)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from datetime import datetime, timezone
from typing import Any

import httpx

from services.webhooks.dispatch import AttemptResult, Clients, attempt
from services.webhooks.outbox import Delivery, Outbox
from services.analytics.enrich import describe_tracking
from shared import events as ev
from shared import metrics
from shared.control import webhook_failures
from shared.control.errors import ChangeRefused, ControlBehind
from shared.control.webhook_failures import AUTO_DISABLE_AFTER
from shared.consumer_loop import PoisonGuard, run_consumer
from shared.crypto import unseal
from shared.log.port import InvalidRecord, Record
from shared.runtime import Runtime

log = logging.getLogger(__name__)
DESCRIBED = 20_000  # messages whose fields are remembered for their opens and clicks (~300 bytes each)
PER_ENDPOINT, GLOBAL = 4, 64
QUEUED_PER_ENDPOINT = 2 * PER_ENDPOINT  # deliveries of one endpoint taken from the outbox at once
CONTROL_LAG = 60.0  # seconds a delivery for an endpoint this process does not know yet is kept waiting
MAX_RETRY_AFTER = 86400
KEEP_FINISHED = 86400.0  # seconds a finished outbox row is kept (the log keeps the events and attempts)
PURGE_EVERY = 600.0  # seconds between two purges of finished rows
HANDOVER_BATCH, HANDOVER_RECORD = 1000, 100  # pending deliveries read at once / put in one record


def secrets_of(master_key: bytes, wh: ev.WebhookSaved) -> list[str]:
    out = [unseal(master_key, wh.secret_sealed, wh.webhook_id).decode()]
    if wh.previous_secret_sealed and wh.previous_until and wh.previous_until > datetime.now(timezone.utc):
        out.append(unseal(master_key, wh.previous_secret_sealed, wh.webhook_id).decode())
    return out


def replayed_id(event: dict[str, object]) -> str:
    """The id of one event of a replay; ``InvalidRecord`` (poison) when it has none."""
    event_id = event.get("id")
    if not isinstance(event_id, str):
        raise InvalidRecord(f"a replayed event has no id: {str(event)[:200]}")
    return event_id


def attempt_event(wh: ev.WebhookSaved, d: Delivery, **result: Any) -> ev.WebhookAttempted:
    """The attempts log's entry for the next attempt of ``d`` (its id derived from the delivery
    and the attempt's number, so an entry written again is the same row)."""
    n = d.attempt + 1
    return ev.WebhookAttempted(id=ev.derived_id(d.key, "attempt", n), workspace_id=wh.workspace_id,
                               service_id=wh.service_id, webhook_id=wh.webhook_id, event_id=d.event["id"],
                               event_type=d.event["type"], attempt=n, **result)


class WebhookService:
    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.settings = runtime.settings
        self.outbox = Outbox(self.settings.data_dir / "webhooks.sqlite3")
        self.guard = PoisonGuard(runtime.log, "webhooks")
        self._in_flight: set[str] = set()
        self._unwritten: dict[str, tuple[str, int, float | None]] = {}  # see _finish
        self._held_back = False  # the last round left due deliveries for endpoints at their cap
        self._purged_at = float("-inf")
        self._purging: asyncio.Task[None] | None = None
        self._per_endpoint: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(PER_ENDPOINT))
        self._global = asyncio.Semaphore(GLOBAL)
        self._wake = asyncio.Event()
        self._described: OrderedDict[str, dict[str, Any]] = OrderedDict()  # email id → its message's fields (``_learn``)

    # ------------------------------------------------------------ intake
    def subscribers(self, event: ev.LifecycleEvent | ev.EmailReceived) -> list[ev.WebhookSaved]:
        if event.service_id is None:  # every webhook belongs to a service
            return []
        chosen = getattr(event, "webhook_ids", None)  # received mail: its routing rules' choice (docs/receiving.md)
        return [w for w in self.rt.control.state.webhooks_of(event.service_id)
                if w.status == "enabled" and event.type in w.events and (chosen is None or w.webhook_id in chosen)]

    async def handle(self, records: list[Record]) -> None:
        """Parse → queue deliveries in the outbox (durable). The runner commits after."""
        rows, handed = [], []
        for record in records:
            e = await self.guard.decode(record)
            with self.guard.for_record(record):  # InvalidRecord: dead-lettered
                if isinstance(e, ev.WebhookReplay):
                    rows += [(f"{e.webhook_id}|{replayed_id(x)}|{e.id}", e.webhook_id, x) for x in e.events]
                elif isinstance(e, ev.WebhookHandover):
                    handed += [(e.webhook_id, d) for d in e.deliveries]
                elif e is not None and e.type in ev.WEBHOOK_TYPES:
                    self._learn(e)
                    if hooks := self.subscribers(e):
                        payload = e.model_dump(mode="json", by_alias=True)  # only for an event someone subscribed to
                        rows += [(f"{w.webhook_id}|{e.id}", w.webhook_id, payload) for w in hooks]
        await self._describe([payload for _, _, payload in rows])
        await self.outbox.add(rows)
        await self.outbox.take_over(handed)
        if rows or handed:
            self._wake.set()

    def _learn(self, e: ev.LifecycleEvent | ev.EmailReceived) -> None:
        """Remember the message fields a lifecycle event carries (``sent``, ``delivered``…): the
        opens and clicks of that message come later on the same partition (keyed by email id)."""
        subject, from_ = getattr(e, "subject", None), getattr(e, "from_", None)
        if e.type in ev.TRACKING_TYPES or (subject is None and from_ is None):
            return
        self._described[e.email_id] = {"from": from_, "subject": subject, "tags": list(getattr(e, "tags", []) or []),
                                       "template_id": getattr(e, "template_id", None)}
        self._described.move_to_end(e.email_id)
        while len(self._described) > DESCRIBED:
            self._described.popitem(last=False)

    async def _describe(self, payloads: list[dict]) -> None:
        """Opens, clicks and one-click unsubscribes come from the public endpoints with the
        signed token only: their message's ``from``, ``subject`` and ``tags`` are filled in (every
        event's ``data`` has them: docs/tracking.md) from the message's earlier events this process saw
        (``_learn``), else from the analytics store (one query a batch) where this process has one
        (`postline all`'s background process; a webhooks pod given POSTLINE_CLICKHOUSE_URL). A
        store that does not answer leaves them empty rather than hold the events up."""
        missing = []
        for payload in payloads:
            if payload.get("type") in ev.TRACKING_TYPES and payload.get("subject") is None:
                known = self._described.get(payload.get("email_id", ""))
                if known is None:
                    missing.append(payload)
                else:
                    payload.update({k: payload.get(k) or v for k, v in known.items()})
        if not missing or self.rt.store is None:
            return
        try:
            await describe_tracking(self.rt.store, missing)
        except Exception as exc:
            log.warning("webhooks: tracking events sent without their message's fields: %s", exc)

    # ------------------------------------------------------------ delivery
    async def dispatch_loop(self, stop: asyncio.Event) -> None:
        clients = Clients(close_after=self.settings.webhook_timeout + 5, follow_redirects=False, trust_env=False,
                          verify=httpx.create_ssl_context())  # one TLS context for every client (~40 ms each)
        try:
            tasks: set[asyncio.Task] = set()
            while not stop.is_set():
                self._write_unwritten()
                self._purge_now_and_then()
                taken = self._take_due(clients, tasks)
                nxt = self.outbox.next_due(self._in_flight)
                # rows due that no endpoint had room for: the next round when a delivery ends (its
                # finally wakes the loop), not every 20 ms (each round reads the due rows)
                wait = 0.5 if nxt is None or (not taken and nxt <= time.time()) else max(0.02, min(0.5, nxt - time.time()))
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait([waiter, asyncio.ensure_future(stop.wait())], timeout=wait,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=self.settings.webhook_timeout + 1)
                for t in tasks:  # still waiting for a slot: stays pending (handed over, or tried at the next start)
                    t.cancel()
                if tasks:  # (a finished task leaves the set: it may be empty by now)
                    await asyncio.wait(tasks)
        finally:
            if self._purging is not None:
                await asyncio.wait({self._purging})
            await clients.aclose()

    def _take_due(self, clients: Clients, tasks: set[asyncio.Task]) -> int:
        """A task per due delivery an endpoint has room for: at most ``QUEUED_PER_ENDPOINT``
        per endpoint (running or waiting for one of its ``PER_ENDPOINT`` slots), so a backlog
        for one endpoint (down for an hour) holds neither the memory nor the others' turn."""
        busy = self._in_flight | self._unwritten.keys()
        per_endpoint: dict[str, int] = defaultdict(int)
        for key in self._in_flight:  # every outbox key starts with its endpoint's id (handle)
            per_endpoint[key.partition("|")[0]] += 1
        chosen, self._held_back = [], False
        for key, webhook_id in self.outbox.due_keys(time.time(), per_endpoint=2 * QUEUED_PER_ENDPOINT):
            if key in busy:
                continue
            if per_endpoint[webhook_id] >= QUEUED_PER_ENDPOINT:
                self._held_back = True  # taken when one of its deliveries ends (_deliver wakes the loop)
                continue
            per_endpoint[webhook_id] += 1
            chosen.append(key)
        for d in self.outbox.load(chosen):
            self._in_flight.add(d.key)
            t = asyncio.create_task(self._deliver(clients, d))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        return len(chosen)

    def _finish(self, key: str, state: str, attempt: int, next_at: float | None = None) -> None:
        """``Outbox.finish``; when the outbox cannot be written (a full disk) the row's new
        state is kept here and written again before each dispatch round, and the row is not
        dispatched meanwhile — an endpoint that got the event is not sent it again every round."""
        try:
            self.outbox.finish(key, state, attempt, next_at)
        except Exception:
            log.exception("webhook delivery %s: the outbox cannot be written; its state is kept in memory", key)
            self._unwritten[key] = (state, attempt, next_at)

    def _write_unwritten(self) -> None:
        for key, (state, attempt, next_at) in list(self._unwritten.items()):
            try:
                self.outbox.finish(key, state, attempt, next_at)
            except Exception:
                return  # still not writable: the next round tries again
            del self._unwritten[key]

    def _purge_now_and_then(self) -> None:
        """Finished rows are dropped a day after they were queued (each keeps its event's JSON),
        in a worker thread, in batches."""
        if time.monotonic() - self._purged_at < PURGE_EVERY:
            return
        self._purged_at = time.monotonic()
        self._purging = asyncio.get_running_loop().create_task(self._purge())

    async def _purge(self) -> None:
        try:
            await asyncio.to_thread(self.outbox.purge, time.time() - KEEP_FINISHED)
        except Exception:
            log.warning("webhook outbox: finished rows not purged", exc_info=True)

    async def _deliver(self, clients: Clients, d: Delivery) -> None:
        try:
            wh = self.rt.control.state.webhooks.get(d.webhook_id)
            if wh is None and time.time() - d.created < CONTROL_LAG:  # a replay or test event queued right after
                self._finish(d.key, "pending", d.attempt, time.time() + 1)  # the endpoint was made elsewhere:
                return                                                      # this process may not know it yet
            if wh is None or wh.status != "enabled":
                await self._skip(wh, d)
                return
            async with self._per_endpoint[d.webhook_id], self._global:  # a slow endpoint waits in its own queue
                result = await attempt(clients, wh.url, secrets_of(self.settings.master_key, wh), d.event,
                                       self.settings.webhook_allow_private, self.settings.webhook_timeout)
            await self._record(wh, d, result)
        except Exception:
            log.exception("webhook delivery %s crashed; retrying later", d.key)
            self._finish(d.key, "pending", d.attempt, time.time() + 30)
        finally:
            self._in_flight.discard(d.key)
            if self._held_back:
                self._wake.set()  # its endpoint has room again for a delivery held back

    async def _skip(self, wh: ev.WebhookSaved | None, d: Delivery) -> None:
        """A delivery whose endpoint was disabled (or deleted) after it was queued ends
        untried. A retry's end is said in the disabled endpoint's attempts log (``skipped``,
        the attempt that was not made): it would otherwise stay "retrying" there, its next
        attempt long past. A delivery never tried leaves nothing (its event was not sent to
        the endpoint); a deleted endpoint has no log to read."""
        if wh is not None and d.attempt > 0:
            att = attempt_event(wh, d, outcome="skipped", latency_ms=0.0,
                                error=f"not tried: the endpoint is {wh.status}")
            await self.rt.log.append(ev.Topic.EVENTS, wh.webhook_id, ev.encode(att))
            metrics.WEBHOOK_ATTEMPTS.labels("skipped").inc()
        self._finish(d.key, "skipped", d.attempt)

    async def _record(self, wh: ev.WebhookSaved, d: Delivery, r: AttemptResult) -> None:
        n = d.attempt + 1
        delays = self.settings.webhook_delays
        next_at = None
        if r.ok:
            outcome, state = "delivered", "done"
            await webhook_failures.count(self.rt.control, wh.webhook_id, failed=False)
        elif r.status_code == 410:
            outcome, state = "disabled", "failed"
            await self._disable(wh, "the endpoint answered 410 Gone")
        elif n > len(delays):
            outcome, state = "failed", "failed"
            if await webhook_failures.count(self.rt.control, wh.webhook_id, failed=True) >= AUTO_DISABLE_AFTER:
                await self._disable(wh, f"auto-disabled: {AUTO_DISABLE_AFTER} messages failed in a row")
        else:
            outcome, state = "retrying", "pending"
            wait = delays[n - 1]
            if r.status_code in (429, 503) and r.retry_after is not None:
                wait = min(r.retry_after, MAX_RETRY_AFTER)
            next_at = time.time() + wait
        metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        att = attempt_event(wh, d, outcome=outcome, status_code=r.status_code, latency_ms=round(r.latency_ms, 1),
                            error=r.error, next_attempt_at=datetime.fromtimestamp(next_at, timezone.utc) if next_at else None)
        await self.rt.log.append(ev.Topic.EVENTS, wh.webhook_id, ev.encode(att))
        self._finish(d.key, state, n, next_at)

    async def _disable(self, wh: ev.WebhookSaved, reason: str) -> None:
        current = self.rt.control.state.webhooks.get(wh.webhook_id) or wh
        if current.status == "disabled":
            return
        try:
            await self.rt.control.change(current, status="disabled", disabled_reason=reason)
        except ChangeRefused as exc:  # the endpoint was changed or deleted meanwhile: that change stands
            log.info("webhook %s not disabled: %s", wh.webhook_id, exc)
            return
        except ControlBehind:  # written, not read back yet: the attempt's outcome is recorded all the same
            log.warning("webhook %s disabled (%s), not read back yet", wh.webhook_id, reason)
            return
        log.warning("webhook %s disabled: %s", wh.webhook_id, reason)

    async def hand_over(self) -> int:
        """Hand every pending delivery to the group on ``email.events``, then forget it: a
        stopping pod may be a scaled-down one, whose volume nobody reads again. Returns how many
        were handed over. What stays here for this process's next start: a delivery whose new
        state could not be written (a full disk), and any when the append fails; one whose
        forgetting fails after its append is made twice (at least once, as every delivery)."""
        n, after = 0, ""
        self._write_unwritten()
        while page := await asyncio.to_thread(self.outbox.pending, HANDOVER_BATCH, after):
            after = page[-1][1].key
            by_endpoint: dict[str, list[ev.HandedDelivery]] = defaultdict(list)
            for webhook_id, d in page:
                if d.key not in self._unwritten:
                    by_endpoint[webhook_id].append(d)
            if not by_endpoint:
                continue
            await self.rt.log.append_many(ev.Topic.EVENTS, [
                (webhook_id, ev.encode(ev.WebhookHandover(workspace_id=str(ds[0].event.get("workspace_id") or ""),
                                                          webhook_id=webhook_id, deliveries=ds[i:i + HANDOVER_RECORD])))
                for webhook_id, ds in by_endpoint.items() for i in range(0, len(ds), HANDOVER_RECORD)])
            keys = [d.key for ds in by_endpoint.values() for d in ds]
            await asyncio.to_thread(self.outbox.forget, keys)
            n += len(keys)
        return n

    async def run(self, stop: asyncio.Event) -> None:
        """Queue and deliver until ``stop``; then, where the group can move partitions to other
        processes (Kafka), hand the pending deliveries over (``hand_over``)."""
        events = self.rt.log.consumer([ev.Topic.EVENTS], "webhooks")
        try:
            await asyncio.gather(run_consumer(events, self.handle, stop, guard=self.guard), self.dispatch_loop(stop))
            if stop.is_set() and events.partitions_move:
                try:
                    if n := await self.hand_over():
                        log.info("handed %d pending webhook deliveries over to the group", n)
                except Exception:
                    log.exception("handing pending webhook deliveries over failed; they stay in this outbox")
        finally:
            self.outbox.close()
