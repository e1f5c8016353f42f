"""Resend's webhook events for a full-access key: what was sent to an endpoint, each
event's delivery attempts, and replay (services/api/manage/webhooks.py; the analytics
store records the attempts, so these answer 503 on a process without one)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path

from services.api.context import ApiContext
from services.api.auth import runtime
from services.api.errors import unless_refused
from services.api.manage import webhooks as manage
from services.api.manage.webhook_inputs import ReplayRequest
from services.api.routes.resend.paging import Paging, envelope, page_of, paging
from services.api.routes.resend.webhook_shapes import STATUS, attempt_view, event_summary
from services.api.routes.resend.webhooks import own_webhook
from shared import events as ev

router = APIRouter(prefix="/webhooks/{webhook_id}/events", tags=["resend: webhooks"])
MAX_LISTED = 500  # the newest events or attempts a list pages through


@router.get("")
async def list_events(p: Paging = Depends(paging), w: ev.WebhookSaved = Depends(own_webhook),
                      rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Newest first: `{id, type, created_at, status}` (`success`, `attempting`, `failed`)."""
    rows = unless_refused(await manage.events(rt, w, MAX_LISTED))
    data, more = page_of(rows, lambda r: r["event_id"], p)
    return envelope([event_summary(r) for r in data], more)


@router.get("/{event_id}")
async def get_event(event_id: str, w: ev.WebhookSaved = Depends(own_webhook),
                    rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    payload, last = unless_refused(await manage.event(rt, w, event_id))
    return {"object": "webhook_event", **event_summary(last), "next_attempt_at": None, "payload": payload,
            "status": STATUS.get(last["outcome"], "pending")}


@router.post("/{event_id}/replay")
async def replay(event_id: str = Path(max_length=64), w: ev.WebhookSaved = Depends(own_webhook),
                 rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Sends the event to the endpoint again (a new attempt, same `webhook-id`)."""
    unless_refused(await manage.replay(rt, w, ReplayRequest(event_id=event_id)))
    return {"object": "webhook_event", "id": event_id}


@router.get("/{event_id}/attempts")
async def list_attempts(event_id: str, p: Paging = Depends(paging), w: ev.WebhookSaved = Depends(own_webhook),
                        rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Newest first: `{id, http_status_code, response, sent_at}` (`response`: the error, if any)."""
    rows = unless_refused(await manage.attempts(rt, w, MAX_LISTED, event_id))
    data, more = page_of(rows, lambda r: r["attempt_id"], p)
    return envelope([attempt_view(r) for r in data], more)
