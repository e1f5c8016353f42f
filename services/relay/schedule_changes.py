"""Cancel and reschedule of held (scheduled) sends, as the relay applies them.

apply_change: act on the scheduler → emit what happened (``canceled`` or ``scheduled`` per
recipient). Nothing is emitted when nothing was held: the message was already released, so
the timeline keeps telling the truth (it went out) whatever the API answered."""
from __future__ import annotations

from services.relay.handler import RelayContext
from services.relay.scheduler import Scheduler
from shared import events as ev


def scheduled_events(req: ev.SendRequested) -> list[ev.Event]:
    """``scheduled`` per recipient; the id carries the due time, so a reschedule is a new
    event and a redelivered hold is the same one."""
    assert req.scheduled_at is not None  # only scheduled requests are held
    due = req.scheduled_at.isoformat()
    return [ev.Scheduled(id=ev.derived_id(req.email_id, r, "scheduled", due), recipient=r, time=ev.utcnow(),
                         scheduled_at=req.scheduled_at, **ev.lifecycle_fields(req)) for r in req.recipients]


def canceled_events(req: ev.SendRequested) -> list[ev.Event]:
    return [ev.Canceled(id=ev.derived_id(req.email_id, r, "canceled"), recipient=r, time=ev.utcnow(),
                        **ev.lifecycle_fields(req)) for r in req.recipients]


async def emit(ctx: RelayContext, email_id: str, events: list[ev.Event]) -> None:
    if events:
        await ctx.log.append_many(ev.Topic.EVENTS, [(email_id, ev.encode(e)) for e in events])


async def apply_change(ctx: RelayContext, scheduler: Scheduler, change: ev.SendCanceled | ev.SendRescheduled,
                       partition: int | None = None, handed_over: bool = False) -> None:
    """Apply one ``send-cancelled`` / ``send-rescheduled`` (from ``partition`` of
    ``email.requests``; ``handed_over`` by the partition's previous owner); durable when it
    returns."""
    if isinstance(change, ev.SendCanceled):
        held = await scheduler.cancel(change, partition)
        await emit(ctx, change.email_id, canceled_events(held) if held else [])
    elif isinstance(change, ev.SendRescheduled):
        moved = await scheduler.reschedule(change, partition, handed_over)
        await emit(ctx, change.email_id, scheduled_events(moved) if moved else [])
