"""Resend's ``/webhooks`` for a full-access key: the service's webhook endpoints
(services/api/manage/webhooks.py) in Resend's shapes (webhook_shapes.py); their events,
attempts and replay are in webhook_events.py."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from fastapi import APIRouter, Depends

from services.api.auth import ServiceCaller, full_access_key, runtime
from services.api.context import ApiContext
from services.api.errors import unless_refused
from services.api.manage import webhooks as manage
from services.api.manage.webhook_inputs import WebhookCreate, WebhookUpdate
from services.api.refusal import Refusal
from services.api.routes.resend.paging import Paging, newest_first_page, paging
from services.api.routes.resend.webhook_shapes import (ResendWebhookCreate, ResendWebhookUpdate, postline_body,
                                                       postline_events, webhook_view)
from shared import events as ev

router = APIRouter(prefix="/webhooks", tags=["resend: webhooks"])
T = TypeVar("T")


async def own_webhook(webhook_id: str, caller: ServiceCaller = Depends(full_access_key),
                      rt: ApiContext = Depends(runtime)) -> ev.WebhookSaved:
    return unless_refused(manage.find_webhook(rt, caller.service, webhook_id))


def endpoint_named(outcome: T | Refusal) -> T | Refusal:
    """A refusal about ``url`` names Resend's ``endpoint``."""
    if isinstance(outcome, Refusal) and outcome.field == "url":
        return dataclasses.replace(outcome, field="endpoint")
    return outcome


@router.post("", status_code=201)
async def create(body: ResendWebhookCreate, caller: ServiceCaller = Depends(full_access_key),
                 rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """`{endpoint, events}` → `{object, id, signing_secret}` (the secret is shown only here)."""
    events = unless_refused(postline_events(body.events))
    made = unless_refused(postline_body(WebhookCreate, url=body.endpoint, events=events))
    created = unless_refused(endpoint_named(await manage.create_webhook(rt, caller.service, made)))
    return {"object": "webhook", "id": created["id"], "signing_secret": created["secret"]}


@router.get("")
async def list_webhooks(p: Paging = Depends(paging), caller: ServiceCaller = Depends(full_access_key),
                        rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return newest_first_page(rt.control.state.webhooks_of(caller.service.service_id), lambda w: w.created_at,
                             lambda w: w.webhook_id, webhook_view, p)


@router.get("/{webhook_id}")
async def get_webhook(w: ev.WebhookSaved = Depends(own_webhook)) -> dict[str, Any]:
    return webhook_view(w)


@router.patch("/{webhook_id}")
async def update(body: ResendWebhookUpdate, w: ev.WebhookSaved = Depends(own_webhook),
                 rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """`endpoint`, `events`, `status` (`enabled` | `disabled`): the fields given."""
    events = unless_refused(postline_events(body.events))
    change = unless_refused(postline_body(WebhookUpdate, url=body.endpoint, events=events, status=body.status))
    unless_refused(endpoint_named(await manage.update_webhook(rt, w, change)))
    return {"object": "webhook", "id": w.webhook_id}


@router.delete("/{webhook_id}")
async def delete(w: ev.WebhookSaved = Depends(own_webhook), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    unless_refused(await manage.delete_webhook(rt, w))
    return {"object": "webhook", "id": w.webhook_id, "deleted": True}


@router.post("/{webhook_id}/signing-secret/rotate")
async def rotate_secret(w: ev.WebhookSaved = Depends(own_webhook), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """A new secret, shown only here; the old one keeps signing for a day (the overlap)."""
    rotated = unless_refused(await manage.update_webhook(rt, w, WebhookUpdate(rotate_secret=True)))
    return {"object": "webhook", "id": w.webhook_id, "signing_secret": rotated["secret"]}
