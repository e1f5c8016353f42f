"""Scheduled emails: reschedule (``PATCH /emails/{id}``) and cancel
(``POST /emails/{id}/cancel``), Resend's update-email and cancel-email.

Each: authenticate → find the email → check it is still held (scheduled, not yet gone out,
not canceled) → append the change to ``email.requests`` keyed by the email id (so the relay
holding the request applies it, in distributed mode too) → remember it locally → ``{object,
id}``. The relay then emits ``scheduled`` (new due time) or ``canceled`` per recipient."""
from __future__ import annotations


from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Depends

from services.api.auth import ServiceCaller, runtime, service_key
from services.api.context import ApiContext
from services.api.email_lookup import Found, find_email, parse_time
from services.api.errors import http_error
from services.api.refusal import Refusal
from services.api.schemas import ErrorBody, ScheduleChanged, ScheduleUpdate
from shared import events as ev

router = APIRouter(tags=["emails"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 503)}
# a change this close to the due time could reach the relay after it released the message
MARGIN = timedelta(seconds=1)


def check_still_held(found: Found, email_id: str, verb: str) -> Refusal | None:
    """A 409 refusal unless the email is scheduled, not canceled and not yet due."""
    due = parse_time(found.scheduled_at)
    if due is None:
        return Refusal(409, f"email {email_id} was not scheduled; only a scheduled email can be {verb}")
    if found.last_event == "canceled":
        return Refusal(409, f"email {email_id} was canceled; it can no longer be {verb}")
    if found.went_out() or due <= datetime.now(timezone.utc) + MARGIN:
        return Refusal(409, f"email {email_id} was already sent (scheduled for {due.isoformat()}); "
                            f"it can no longer be {verb}")
    return None


async def held_email(rt: ApiContext, svc: ev.ServiceSaved, email_id: str, verb: str) -> Found:
    """The email, still held; raises its refusal (404, 409) as the HTTP error."""
    found = await find_email(rt, svc, email_id)
    if isinstance(found, Refusal):
        raise http_error(found)
    if refused := check_still_held(found, email_id, verb):
        raise http_error(refused)
    return found


async def append_change(rt: ApiContext, change: ev.Event, email_id: str) -> None:
    try:
        await rt.log.append(ev.Topic.REQUESTS, email_id, ev.encode(change))
    except Exception as exc:  # log unreachable
        raise http_error(Refusal(503, "the event log is unavailable; nothing was changed, safe to retry",
                                 retry_after=1, cause=exc)) from exc


REMEMBERED_CHANGES = 20_000  # like RecentSends: bounded, oldest forgotten first


def remember_change(rt: ApiContext, email_id: str, **change: Any) -> None:
    """This process answers the next GET with the change before the relay's event arrives."""
    changes = rt.schedule_changes
    changes.setdefault(email_id, {}).update(change)
    changes.move_to_end(email_id)
    while len(changes) > REMEMBERED_CHANGES:
        changes.popitem(last=False)


@router.patch("/emails/{email_id}", response_model=ScheduleChanged, responses=ERRORS)
async def reschedule_email(email_id: str, body: ScheduleUpdate, caller: ServiceCaller = Depends(service_key),
                           rt: ApiContext = Depends(runtime)) -> dict[str, str]:
    """Move a scheduled email to `scheduled_at` (409 once it was sent or canceled)."""
    svc = caller.service
    await held_email(rt, svc, email_id, "rescheduled")
    await append_change(rt, ev.SendRescheduled(workspace_id=svc.workspace_id, service_id=svc.service_id,
                                               email_id=email_id, scheduled_at=body.scheduled_at), email_id)
    remember_change(rt, email_id, scheduled_at=body.scheduled_at.isoformat())
    return {"object": "email", "id": email_id}


@router.post("/emails/{email_id}/cancel", response_model=ScheduleChanged, responses=ERRORS)
async def cancel_email(email_id: str, caller: ServiceCaller = Depends(service_key),
                       rt: ApiContext = Depends(runtime)) -> dict[str, str]:
    """Cancel a scheduled email: it will not be sent (409 once it was sent or canceled)."""
    svc = caller.service
    await held_email(rt, svc, email_id, "canceled")
    await append_change(rt, ev.SendCanceled(workspace_id=svc.workspace_id, service_id=svc.service_id,
                                             email_id=email_id), email_id)
    remember_change(rt, email_id, canceled=True)
    return {"object": "email", "id": email_id}
