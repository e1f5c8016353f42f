"""Process one send request: a checklist of named steps (Postal's OutgoingMessageProcessor).

announce → already_final (outcomes the ledger has: emitted again, not sent again) → build →
sign → deliver (one VERP transaction per recipient, each final outcome into the ledger) →
schedule_retry → emit events → suppress_bounced (services/relay/suppress.py).

Every event id is derived from (email, recipient, type, attempt), so re-processing a
redelivered request emits the same ids and consumers drop the duplicates."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import AsyncIterator, Awaitable, Callable, Sequence

from services.relay import control_wait, tracking
from services.relay.bounce_class import classify
from services.relay.claims import Claims
from services.relay.ledger import Ledger
from services.relay.mime import build
from services.relay.outcome import DeliveryResult, PartlySent
from services.relay.senders.base import Sender
from services.relay.signing import Signer
from services.relay.suppress import Suppressor
from services.relay.shaping.shaper import sending_for
from shared import events as ev
from shared import metrics
from shared.addresses import domain_of, split_bare
from shared.consumer_loop import BatchLost
from shared.control.state import ControlState
from shared import failpoints, providers, retry_schedule
from shared.log.port import EventLog
from shared.retry_schedule import RetryPlan
from shared.settings import Settings
from shared.tasks import gather_all
from shared import verp
from shared.verp import unsubscribe_address

log = logging.getLogger(__name__)


class InFlight:
    """SMTP transactions under way. ``drain`` stops new ones and waits for the rest, which
    both graceful shutdown and failpoint crashes use: a crash is simulated at a pipeline
    step of one message, never in the middle of another message's SMTP hand-over."""

    def __init__(self) -> None:
        self.count, self.closed = 0, False
        self.idle = asyncio.Event()
        self.idle.set()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        while self.closed:
            await asyncio.sleep(3600)
        self.count += 1
        self.idle.clear()
        metrics.RELAY_IN_FLIGHT.inc()
        try:
            yield
        finally:
            self.count -= 1
            metrics.RELAY_IN_FLIGHT.dec()
            if not self.count:
                self.idle.set()

    async def drain(self) -> None:
        self.closed = True
        await self.idle.wait()

    async def crash_point(self, name: str) -> None:
        if failpoints.hit(name):
            await self.drain()
            os._exit(137)


@dataclass
class RelayContext:
    settings: Settings
    log: EventLog
    control: ControlState
    sender: Sender
    ledger: Ledger
    signer: Signer
    in_flight: InFlight = field(default_factory=InFlight)
    claims: Claims = field(default_factory=Claims)
    suppressor: Suppressor | None = None  # None: no suppression step (benchmarks without a control plane)


Outcome = ev.Delivered | ev.Bounced | ev.Failed | ev.Deferred  # a delivery attempt's event for one recipient
RecipientEvent = ev.Sent | ev.Dropped | Outcome  # what the relay emits about one recipient


def announce(req: ev.SendRequested) -> list[RecipientEvent]:
    """First attempt only: ``sent`` per recipient to deliver, ``dropped`` per dropped one."""
    if req.attempt:
        return []
    out: list[RecipientEvent] = [ev.Sent(id=ev.derived_id(req.email_id, r, "sent"), recipient=r, time=req.time,
                                         **ev.lifecycle_fields(req)) for r in req.recipients]
    out += [ev.Dropped(id=ev.derived_id(req.email_id, d.recipient, "dropped"), recipient=d.recipient,
                       reason=d.reason, time=req.time, **ev.lifecycle_fields(req)) for d in req.dropped]
    return out


async def already_final(ctx: RelayContext, req: ev.SendRequested) -> list[RecipientEvent]:
    """Outcome events of recipients the ledger already has a final outcome for: they are not
    sent again, but their event is emitted again (same derived id, so consumers keep one),
    because a crash between the ledger write and the events append would otherwise lose it."""
    recorded = await ctx.ledger.done(req.email_id, req.recipients)
    return [outcome_event(req, rcpt, res, None, status == "failed", ctx.settings.provider_table)
            for rcpt, (status, res) in recorded.items()]


def sending_domain(ctx: RelayContext, req: ev.SendRequested) -> ev.DomainSaved | None:
    if not req.sending_domain:
        return None
    return ctx.control.verified_domain(req.service_id or "", req.sending_domain)


def build_message(ctx: RelayContext, req: ev.SendRequested, domain: ev.DomainSaved | None,
                  extra_headers: dict[str, str] | None = None) -> bytes:
    id_domain = domain.domain if domain else domain_of(split_bare(ctx.settings.sandbox_from))
    return build(req, id_domain, extra_headers)


async def sign(ctx: RelayContext, raw: bytes, domain: ev.DomainSaved | None) -> bytes:
    return await ctx.signer.sign_async(raw, domain) if domain else raw


async def build_and_sign(ctx: RelayContext, req: ev.SendRequested, domain: ev.DomainSaved | None,
                         rcpts: list[str]) -> bytes | dict[str, bytes]:
    """One signed message for every recipient; or, when the message is tracked, one per
    recipient (each copy carries that recipient's own tracking and unsubscribe tokens)."""
    if not tracking.wanted(req):
        return await sign(ctx, build_message(ctx, req, domain), domain)
    tokens, base = tracking.tokens_for(ctx.settings.master_key), tracking.base_url(ctx.settings, domain)
    copies = [tracking.personalize(req, r, tokens, base, mailto=unsubscribe_mailto(ctx, req, domain, r)) for r in rcpts]
    signed = await asyncio.gather(*(sign(ctx, build_message(ctx, c, domain, h), domain) for c, h in copies))
    return dict(zip(rcpts, signed))


def unsubscribe_mailto(ctx: RelayContext, req: ev.SendRequested, domain: ev.DomainSaved | None,
                       rcpt: str) -> str | None:
    """The List-Unsubscribe mailto: address, on the bounce domain whose MX is our inbound
    listener; none for the sandbox sender (its bounce domain is not a customer's)."""
    if not (req.list_unsubscribe and domain):
        return None
    return unsubscribe_address(ctx.settings.master_key, req.email_id, ev.recipient_index(req, rcpt),
                               domain.bounce_domain)


def verp_for(ctx: RelayContext, req: ev.SendRequested, domain: ev.DomainSaved | None, rcpt: str | None) -> str:
    """The return path: bounces map back to (message, recipient); ``rcpt`` None for a
    transaction carrying several recipients (a message-wide token, shared/verp.py)."""
    index = verp.ALL if rcpt is None else ev.recipient_index(req, rcpt)
    bounce_domain = domain.bounce_domain if domain else ctx.settings.hostname
    return verp.return_path(ctx.settings.master_key, req.email_id, index, bounce_domain)


def transactions(rcpts: list[str], raw: bytes | dict[str, bytes]) -> list[list[str]]:
    """Recipients per SMTP transaction: one transaction per destination domain, as an MTA
    does (one copy of the message crosses the wire per receiving server, not per recipient);
    one per recipient when the message is tracked (each recipient has its own copy)."""
    if isinstance(raw, dict) or len(rcpts) == 1:
        return [[r] for r in rcpts]
    by_domain: dict[str, list[str]] = {}
    for r in rcpts:
        by_domain.setdefault(domain_of(r).lower(), []).append(r)
    return list(by_domain.values())


async def deliver(ctx: RelayContext, req: ev.SendRequested, domain: ev.DomainSaved | None, rcpts: list[str],
                  raw: bytes | dict[str, bytes]) -> dict[str, DeliveryResult]:
    """Every transaction of ``transactions`` at once; outcomes per recipient (a server
    answers each RCPT on its own, so one recipient's refusal is its own outcome).

    A final outcome is written to the ledger right after the server's reply, before the
    transaction counts as finished, so the only moment a crash can cause a resend is the
    reply itself in flight (no sender can close that window). No transaction starts while
    the ledger cannot be written (services/relay/ledger.py): mail it could not record.

    A batch found lost (Kafka) raises ``BatchLost``, or ``PartlySent`` with the outcomes of
    the recipients answered before (recorded in the ledger like any others)."""
    sending_for.set((req.workspace_id, req.service_id))  # whose mail a provider's pause alert names

    async def one(group: list[str]) -> dict[str, DeliveryResult]:
        await ctx.ledger.until_writable()
        async with ctx.in_flight.transaction():
            start = time.perf_counter()
            data = raw[group[0]] if isinstance(raw, dict) else raw  # a tracked message has one copy per recipient
            mail_from = verp_for(ctx, req, domain, group[0] if len(group) == 1 else None)
            lost: PartlySent | None = None
            try:
                replies = await ctx.sender.send(mail_from, group, data, require_tls=req.require_tls)
            except PartlySent as exc:  # the shaper's later pass found the batch lost
                lost, replies, group = exc, exc.results, list(exc.results)
            results = {r: replies.get(r) or DeliveryResult("deferred", None, "no reply for recipient") for r in group}
            now = ev.utcnow()
            final = {r: dataclasses.replace(res, at=now) for r, res in results.items() if res.status in ev.FINAL_TYPES}
            if final:
                await ctx.ledger.record([(req.email_id, r, res.status, res) for r, res in final.items()])
            metrics.DELIVERY_SECONDS.observe(time.perf_counter() - start)
        if lost is not None:
            raise PartlySent({**results, **final}) from lost
        return {**results, **final}

    groups = transactions(rcpts, raw)
    if len(groups) == 1:  # the common case: no task per transaction
        return await one(groups[0])
    return await all_at_once(groups, one)


async def all_at_once(groups: list[list[str]],
                      one: Callable[[list[str]], Awaitable[dict[str, DeliveryResult]]]) -> dict[str, DeliveryResult]:
    """``one`` transaction per group at once, their replies merged. When the batch is found
    lost in some of them, the others' replies still count: ``PartlySent`` with them when
    there is a final one, else ``BatchLost``."""
    async def one_or_lost(group: list[str]) -> tuple[dict[str, DeliveryResult], bool]:
        try:
            return await one(group), False
        except PartlySent as exc:
            return exc.results, True
        except BatchLost:
            return {}, True

    parts = await gather_all(*(one_or_lost(g) for g in groups))
    answered = {r: res for replies, _ in parts for r, res in replies.items()}
    if any(lost for _, lost in parts):
        if any(res.status in ev.FINAL_TYPES for res in answered.values()):
            raise PartlySent(answered)
        raise BatchLost("no recipient of the message had a final reply before its batch was lost")
    return answered


def outcome_event(req: ev.SendRequested, rcpt: str, res: DeliveryResult, retry_at: datetime | None,
                  gave_up: bool, provider_table: list[tuple[str, str]] | None = None) -> Outcome:
    common = {**ev.lifecycle_fields(req), "recipient": rcpt, "smtp_code": res.smtp_code, "smtp_reply": res.smtp_reply}
    if res.at is not None:  # a final outcome keeps its time, so an event emitted again is the same row
        common["time"] = res.at
    attempt = req.attempt + 1
    if gave_up and res.status == "deferred":
        return ev.Failed(id=ev.derived_id(req.email_id, rcpt, "failed"), reason=res.failure or "queue lifetime exceeded",
                         **common)
    path = {"mx_host": res.mx_host, "source_ip": res.source_ip, "queued_at": req.time,
            "provider": providers.provider_of(res.mx_host, domain_of(rcpt), provider_table)}
    if res.status == "delivered":
        return ev.Delivered(id=ev.derived_id(req.email_id, rcpt, "delivered"), tls=res.tls, **path, **common)
    if res.status == "bounced":
        cls = classify(res.smtp_code, res.smtp_reply)
        return ev.Bounced(id=ev.derived_id(req.email_id, rcpt, "bounced"), bounce_type=cls.bounce_type,
                          bounce_class=cls.bounce_class, **path, **common)
    return ev.Deferred(id=ev.derived_id(req.email_id, rcpt, "deferred", attempt), attempt=attempt,
                       retry_at=retry_at, **path, **common)


def observe_provider(e: Outcome) -> None:
    """The per-provider metrics of an outcome: deferrals, and queued→delivered latency."""
    if isinstance(e, ev.Deferred):
        metrics.DEFERRALS.labels(metrics.provider_label(e.provider)).inc()
    elif isinstance(e, ev.Delivered) and e.queued_at is not None:
        seconds = (e.time - e.queued_at).total_seconds()
        metrics.DELIVERY_LATENCY.labels(metrics.provider_label(e.provider)).observe(max(seconds, 0.0))


def retry_plan(ctx: RelayContext, req: ev.SendRequested, results: dict[str, DeliveryResult]) -> RetryPlan:
    """The next attempt after attempt number ``req.attempt`` (shared/retry_schedule.py),
    waiting at least as long as any deferring server asked (its ``retry_after``)."""
    asked = [r.retry_after for r in results.values() if r.status == "deferred" and r.retry_after]
    return retry_schedule.plan(ctx.settings.retry_delays, ctx.settings.queue_lifetime, req.attempt,
                               req.first_attempt_at or req.time, ev.utcnow(), max(asked, default=None))


async def schedule_retry(ctx: RelayContext, req: ev.SendRequested, rcpts: list[str], level: int,
                         when: datetime) -> None:
    retry = req.model_copy(update={"recipients": rcpts, "dropped": [], "attempt": req.attempt + 1,
                                   "first_attempt_at": req.first_attempt_at or req.time, "scheduled_at": when})
    await ctx.log.append(ev.retry_topic(level), req.email_id, ev.encode(retry))


async def suppress_bounced(ctx: RelayContext, events: Sequence[RecipientEvent]) -> None:
    """After the events are durable: suppression rules for the bounces among them, re-emitted
    ones included (a crash may have come between their append and this step)."""
    if ctx.suppressor is None:
        return
    for e in events:
        if isinstance(e, ev.Bounced):
            await ctx.suppressor.apply(e, classify(e.smtp_code, e.smtp_reply))


async def settled(ctx: RelayContext, req: ev.SendRequested) -> tuple[list[RecipientEvent], list[str]]:
    """What a request's handling starts from: its first events (``announce``) with the outcomes
    the ledger already has (``already_final``), and the recipients still without one."""
    events = announce(req) + await already_final(ctx, req)
    done = {e.recipient for e in events if e.type in ev.FINAL_TYPES}
    return events, [r for r in req.recipients if r not in done]


async def give_up(ctx: RelayContext, req: ev.SendRequested, reason: str) -> None:
    """End a request without delivering it (it kills the relay: services/relay/crash_guard.py)
    the way ``process`` ends one whose queue lifetime ran out: its first events, the outcomes
    the ledger already has, and ``failed`` (``reason``) for every other recipient, in the
    ledger before its events, so a copy handled later sends nothing and emits the same events."""
    async with ctx.claims.hold(req.email_id):
        events, left = await settled(ctx, req)
        failure = DeliveryResult("deferred", at=ev.utcnow(), failure=reason)
        await ctx.ledger.record([(req.email_id, rcpt, "failed", failure) for rcpt in left])
        events += [outcome_event(req, rcpt, failure, None, True, ctx.settings.provider_table) for rcpt in left]
        metrics.DELIVERIES.labels("failed").inc(len(left))
        await ctx.log.append_many(ev.Topic.EVENTS, [(req.email_id, ev.encode(e)) for e in events])
        await suppress_bounced(ctx, events)


async def emit_answered(ctx: RelayContext, req: ev.SendRequested, events: list[RecipientEvent],
                        answered: dict[str, DeliveryResult]) -> None:
    """A message whose batch was lost after some recipients were answered (``PartlySent``):
    its first events and the final outcomes it got (in the ledger already), so that whoever
    handles the request next finds them; no deferral, no retry — the new owner handles the rest."""
    outcomes = [outcome_event(req, rcpt, res, None, False, ctx.settings.provider_table)
                for rcpt, res in answered.items() if res.status in ev.FINAL_TYPES]
    for e in outcomes:
        metrics.DELIVERIES.labels(e.type).inc()
        observe_provider(e)
    await ctx.log.append_many(ev.Topic.EVENTS, [(req.email_id, ev.encode(e)) for e in [*events, *outcomes]])
    await suppress_bounced(ctx, [*events, *outcomes])


async def process(ctx: RelayContext, req: ev.SendRequested) -> None:
    """Deliver one request; all its effects are durable when this returns. A copy of a
    request this relay is processing waits for it (services/relay/claims.py)."""
    async with ctx.claims.hold(req.email_id):
        await process_unclaimed(ctx, req)


async def process_unclaimed(ctx: RelayContext, req: ev.SendRequested) -> None:
    """``process``, for a caller that holds the email id."""
    events, pending = await settled(ctx, req)
    if pending:
        held = await control_wait.hold(ctx.control, req, ctx.settings.control_wait_timeout)
        if held:  # never unsigned: deferred like a 4xx until the relay knows the domain's keys
            results = {rcpt: held for rcpt in pending}
        else:
            domain = sending_domain(ctx, req)
            raw = await build_and_sign(ctx, req, domain, pending)
            await ctx.in_flight.crash_point("relay.before_deliver")
            try:
                results = await deliver(ctx, req, domain, pending, raw)
            except PartlySent as lost:
                await emit_answered(ctx, req, events, lost.results)
                raise
        plan = retry_plan(ctx, req, results)
        outcomes = [outcome_event(req, rcpt, results[rcpt], plan.when, plan.gave_up, ctx.settings.provider_table)
                    for rcpt in pending]
        await ctx.ledger.record([(req.email_id, rcpt, "failed", dataclasses.replace(results[rcpt], at=e.time))
                                 for rcpt, e in zip(pending, outcomes) if e.type == "failed"])
        await ctx.in_flight.crash_point("relay.after_ledger")
        deferred = [rcpt for rcpt, e in zip(pending, outcomes) if e.type == "deferred"]
        if deferred:
            await schedule_retry(ctx, req, deferred, plan.level, plan.when)
        for e in outcomes:
            metrics.DELIVERIES.labels(e.type).inc()
            observe_provider(e)
        events += outcomes
    if events:
        await ctx.log.append_many(ev.Topic.EVENTS, [(req.email_id, ev.encode(e)) for e in events])
        await suppress_bounced(ctx, events)
    await ctx.in_flight.crash_point("relay.after_events")
