"""Webhook endpoints of a service: CRUD, secret rotation, attempts, replay, test (the HTTP
doors of services/api/manage/webhooks.py). Deliveries follow Standard Webhooks
(docs/architecture.md; services/webhooks/)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from services.api.auth import owned_service, runtime
from services.api.errors import unless_refused
from services.api.manage import webhooks as manage
from services.api.manage.webhook_inputs import ReplayRequest, WebhookCreate, WebhookUpdate, WebhookView
from shared import events as ev
from services.api.context import ApiContext

router = APIRouter(prefix="/api/email/services/{service_id}/webhooks", tags=["webhooks"])


async def owned_webhook(webhook_id: str, svc: ev.ServiceSaved = Depends(owned_service),
                        rt: ApiContext = Depends(runtime)) -> ev.WebhookSaved:
    return unless_refused(manage.find_webhook(rt, svc, webhook_id))


@router.post("", status_code=201, response_model=WebhookView)
async def create_webhook(body: WebhookCreate, svc: ev.ServiceSaved = Depends(owned_service),
                         rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.create_webhook(rt, svc, body))


@router.get("", response_model=dict[str, list[WebhookView]])
async def list_webhooks(svc: ev.ServiceSaved = Depends(owned_service), rt: ApiContext = Depends(runtime)
                        ) -> dict[str, Any]:
    return {"data": [manage.view(w) for w in rt.control.state.webhooks_of(svc.service_id)]}


@router.get("/{webhook_id}", response_model=WebhookView)
async def get_webhook(w: ev.WebhookSaved = Depends(owned_webhook)) -> dict[str, Any]:
    return manage.view(w)


@router.patch("/{webhook_id}", response_model=WebhookView)
async def update_webhook(body: WebhookUpdate, w: ev.WebhookSaved = Depends(owned_webhook),
                         rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.update_webhook(rt, w, body))


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(w: ev.WebhookSaved = Depends(owned_webhook), rt: ApiContext = Depends(runtime)) -> None:
    unless_refused(await manage.delete_webhook(rt, w))


@router.get("/{webhook_id}/attempts")
async def list_attempts(limit: int = Query(50, ge=1, le=500), w: ev.WebhookSaved = Depends(owned_webhook),
                        rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Recent delivery attempts, newest first, with status code and latency."""
    return {"data": unless_refused(await manage.attempts(rt, w, limit))}


@router.post("/{webhook_id}/replay", status_code=202)
async def replay(body: ReplayRequest, w: ev.WebhookSaved = Depends(owned_webhook),
                 rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Send one event (``event_id``) or every subscribed event in a time range again."""
    return unless_refused(await manage.replay(rt, w, body))


@router.post("/{webhook_id}/test", status_code=202)
async def send_test(w: ev.WebhookSaved = Depends(owned_webhook), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Send a sample ``delivered`` event (email id ``test-…``) to the endpoint; 409 while it is disabled."""
    return unless_refused(await manage.send_test(rt, w))
