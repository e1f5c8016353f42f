"""Relay runner: wires the request consumer, the delay forwarders and the sender."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import cast

from services.relay.crash_guard import CrashGuard
from services.relay.handler import RelayContext, give_up, process
from services.relay.ledger import Ledger
from services.relay.ledger_rebuild import LedgerRebuild
from services.relay.schedule_changes import apply_change, canceled_events, emit, scheduled_events
from services.relay.scheduler import HANDED_OVER, Scheduler
from services.relay.senders.base import Sender
from services.relay.signing import Signer
from services.relay.suppress import Suppressor
from shared import events as ev
from shared import metrics
from shared.consumer_loop import BatchInterrupted, BatchPolicy, PoisonGuard, ensure_batch_current, run_consumer
from shared.control.state import ControlState
from shared.devinbox import DevInbox
from shared.failpoints import crash_on_tag
from shared.log.port import EventLog, Record
from shared.runtime import Runtime
from shared.settings import Settings
from shared.tasks import gather_all

log = logging.getLogger(__name__)


def make_sender(settings: Settings, inbox: DevInbox | None = None, control: ControlState | None = None,
                log: EventLog | None = None) -> Sender:
    if settings.delivery == "smarthost":
        from services.relay.senders.smarthost import SmarthostSender

        return SmarthostSender(settings)
    if settings.delivery == "mx":
        from services.relay.senders.mx import MxSender

        return MxSender(settings, control, log)
    from services.relay.senders.inbox import InboxSender

    return InboxSender(cast(DevInbox, inbox))  # the runtime opens its dev inbox with delivery=inbox


CHANGE_TYPES = (b'"type":"send-cancelled"', b'"type":"send-rescheduled"')  # as ev.encode writes them


def schedule_change(record: Record) -> ev.SendCanceled | ev.SendRescheduled | None:
    """The cancel or reschedule ``record`` holds, else None (a send; undecodable: the request
    handler's guard dead-letters it). Sends are told apart without decoding them."""
    if not record.value or not any(t in record.value for t in CHANGE_TYPES):
        return None
    try:
        change = ev.decode(record.value)
    except Exception:
        return None
    return change if isinstance(change, (ev.SendCanceled, ev.SendRescheduled)) else None


def is_for_later(req: ev.SendRequested) -> bool:
    """A first attempt whose ``scheduled_at`` is still ahead (retries carry their own due time)."""
    return (req.attempt == 0 and req.scheduled_at is not None
            and req.scheduled_at > datetime.now(timezone.utc) + timedelta(milliseconds=200))


def ledger_dir(share: tuple[int, int]) -> str:
    """Each relay process keeps its own ledger files (a cache of the log: a process that gets
    other partitions after a restart rebuilds their ledger from the outcome events)."""
    return "ledger" if share[0] == 0 else f"ledger-{share[0]}"


class Relay:
    """The relay role: delivers email.requests and holds the scheduled ones in the data dir.
    Under `postline all` with several relay processes, each delivers the requests of its share
    of the partitions (``Runtime.relay_share``); they share the scheduler's file (SQLite, WAL).
    Releasing what is held, forwarding retries and receiving bounces are the data dir's
    duties, run once per data dir by the housekeeping role (services/housekeeping.py)."""

    def __init__(self, runtime: Runtime) -> None:
        s = runtime.settings
        self.runtime = runtime
        self.ctx = RelayContext(settings=s, log=runtime.log, control=runtime.control.state,
                                sender=make_sender(s, runtime.inbox, runtime.control.state, runtime.log), ledger=Ledger(s.data_dir / ledger_dir(runtime.relay_share)),
                                signer=Signer(s.master_key),
                                suppressor=Suppressor(runtime.control, runtime.store, count_best_effort=True))
        self.scheduler = Scheduler(s.data_dir / "scheduled.sqlite3", runtime.log)
        self.guard = PoisonGuard(runtime.log, "relay")
        self.policy = BatchPolicy(max_records=s.relay_concurrency * 4)
        # the most a batch that died can have held of one partition: the careful window after a crash
        self.crashes = CrashGuard(s.data_dir / ledger_dir(runtime.relay_share), s.relay_crashes_per_request,
                                  window=self.policy.max_records)
        runtime.checks["ledger_writable"] = lambda: self.ctx.ledger.writable
        self._slots = asyncio.Semaphore(s.relay_concurrency)
        self.stopping = asyncio.Event()  # run()'s stop event, once it runs

    async def handle_batch(self, records: list[Record]) -> None:
        """The batch's cancels and reschedules first, in log order: a copy of a request that
        comes after one in the batch (handed over, or released) goes by it (``as_changed``);
        then the requests, together."""
        metrics.RELAY_QUEUE_DEPTH.set(len(records))
        for record in records:
            if (change := schedule_change(record)) is not None:
                await apply_change(self.ctx, self.scheduler, change, record.partition, HANDED_OVER in record.headers)
        careful = [self.crashes.careful(r) for r in records] if self.crashes.unclean else []
        if any(careful):  # after an unclean start (crash_guard.py)
            await self._under_counts(records, careful)
        else:
            await gather_all(*(self._one(r) for r in records))
        metrics.RELAY_QUEUE_DEPTH.set(0)

    async def _one(self, record: Record) -> None:
        """Deliver or hold one request (a cancel or reschedule was applied by handle_batch).
        Raises ``BatchLost`` when the group has given the batch to another relay (Kafka): the
        requests not yet under way are left to it (checked again right before each SMTP
        transaction, services/relay/senders/smtp_pool.py)."""
        async with self._slots:
            ensure_batch_current()
            req = await self.guard.decode(record)
            if req is None or isinstance(req, (ev.SendCanceled, ev.SendRescheduled)):
                return
            crash_on_tag("relay.handling", req.tags)  # tests: a request that kills the process
            with self.guard.for_record(record):  # a request no step can handle is dead-lettered
                # a redelivered, released or handed-over copy that arrives after a cancel never goes
                # out, and one that arrives after a reschedule goes by the new time
                changed = self.scheduler.as_changed(req) if req.scheduled_at is not None and req.attempt == 0 else req
                if changed is None:
                    await emit(self.ctx, req.email_id, canceled_events(req))  # the same ids as at the cancel
                elif is_for_later(changed):
                    news = await self.scheduler.hold(changed, record.partition)
                    # a handed-over copy was said ``scheduled`` by the relay that held it first: it
                    # is said again only for a time this relay moved it to, the first time it does
                    # (else at every rebalance); others every time (a batch done again: same ids)
                    handed = HANDED_OVER in record.headers
                    if news is not None and (not handed or (news and changed is not req)):
                        await emit(self.ctx, changed.email_id, scheduled_events(changed))
                else:
                    await process(self.ctx, changed)

    async def _under_counts(self, records: list[Record], careful: list[bool]) -> None:
        """``_one`` for each record after an unclean start (crash_guard.py), in log order:
        those no death was counted against together, under one count (lowered once every one
        of them has ended); then each suspect alone, under its own; a request counted
        ``limit`` times is given up instead. A stop ends the suspects' turn (``BatchInterrupted``:
        one at a time, they could outlast the stop's grace period, whose SIGKILL would then
        count against an innocent one)."""
        deaths = [self.crashes.deaths(r) if c else 0 for r, c in zip(records, careful)]
        together = [i for i, n in enumerate(deaths) if n == 0]
        with self.crashes.holding([records[i] for i in together if careful[i]]):
            await gather_all(*(self._one(records[i]) for i in together))
        for r, n in zip(records, deaths):
            if n and self.stopping.is_set():
                raise BatchInterrupted("the relay is stopping: the suspects left are handled after the next start")
            if n >= self.crashes.limit:
                await self._give_up(r, n)
            elif n:
                with self.crashes.holding([r]):
                    await self._one(r)

    async def _give_up(self, record: Record, deaths: int) -> None:
        """A request ended without delivery (handler.give_up), a copy held for later canceled,
        and the record marked for the dead-letter topic, with the reason, for an operator. (A
        cancel or reschedule was applied by handle_batch: it only changes the scheduler's
        file, and dropping it would let a canceled send go out.) Only by the request's owner
        (``BatchLost`` once the batch is another relay's)."""
        ensure_batch_current()
        reason = f"the relay process died {deaths} times handling this message; it was given up"
        req = await self.guard.decode(record)
        if req is None or isinstance(req, (ev.SendCanceled, ev.SendRescheduled)):
            return  # undecodable: the guard dead-letters it with its batch
        log.error("request %s/%s@%s: %s", record.topic, record.partition, record.offset, reason)
        if isinstance(req, ev.SendRequested):
            no_copy = ev.SendCanceled(workspace_id=req.workspace_id, service_id=req.service_id, email_id=req.email_id)
            await self.scheduler.cancel(no_copy, record.partition)  # no held or later copy goes out either
            await give_up(self.ctx, req, reason)
        self.guard.mark(record, RuntimeError(reason))  # dead-lettered once its batch is done

    async def _hand_over(self, keep: set[int]) -> None:
        """Hand the sends held for partitions outside ``keep`` to their owners; one that
        fails (the log unreachable) leaves them for the next assignment or start."""
        try:
            if n := await self.scheduler.hand_over(keep):
                log.info("handed %d scheduled sends over to the owners of their partitions", n)
        except Exception:
            log.exception("handing scheduled sends over failed; they stay held here until the next assignment")

    async def _give_up_when_stopped(self, stop: asyncio.Event) -> None:
        """On stop, requests waiting for a ledger that cannot be written give up: their batch
        is not committed (a graceful stop must not wait for the disk)."""
        await stop.wait()
        self.ctx.ledger.give_up()

    async def run(self, stop: asyncio.Event) -> None:
        self.stopping = stop
        lg = self.runtime.log
        requests = lg.consumer([ev.Topic.REQUESTS], "relay")
        requests.take_share(*self.runtime.relay_share)
        rebuild = LedgerRebuild(lg, self.ctx.ledger, self.ctx.settings, continues=lambda: requests.assignment_continues)

        async def on_assigned(starts: dict[tuple[str, int], int]) -> None:  # before any request
            if requests.partitions_move:  # held sends follow their partition (scheduler.py), at once
                await self._hand_over({p for (topic, p) in starts if topic == str(ev.Topic.REQUESTS)})
            await rebuild.on_assigned(starts)

        requests.on_assigned = on_assigned
        # a relay the group has given nothing (a join under way, or stalled) delivers nothing: not ready
        self.runtime.checks["requests_assigned"] = lambda: requests.assigned
        self.crashes.start()
        await self.ctx.sender.start()
        tasks = [asyncio.create_task(run_consumer(requests, self.handle_batch, stop, self.policy, guard=self.guard))]
        tasks.append(asyncio.create_task(self._give_up_when_stopped(stop)))
        try:
            await asyncio.gather(*tasks)
        finally:
            if stop.is_set():  # stopped because it was told to (a batch cut short included): not a crash
                self.crashes.stop()
            if stop.is_set() and requests.partitions_move:  # told to stop (a scale-down, a restart)
                await self._hand_over(set())
            for t in tasks:
                t.cancel()
            await self.ctx.sender.close()
            self.ctx.ledger.close()
            self.ctx.signer.close()
            self.scheduler.close()
