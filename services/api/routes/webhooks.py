"""Webhook endpoints of a service: CRUD, secret rotation, attempts, replay, test. Deliveries
follow Standard Webhooks (docs/architecture.md; services/webhooks/)."""
from __future__ import annotations

import base64
import os
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.api.auth import owned_service, runtime
from shared import events as ev
from shared.crypto import seal
from shared.ssrf import BlockedDestination, check_url_shape, resolve_checked
from shared.store import queries

router = APIRouter(prefix="/api/email/services/{service_id}/webhooks", tags=["webhooks"])
ROTATION_OVERLAP = timedelta(hours=24)
MAX_REPLAY = 1000


def _events(v: list[str] | None) -> list[str] | None:
    if v is None:
        return v
    if not v:
        raise ValueError("at least one event type")
    bad = [e for e in v if e not in ev.LIFECYCLE_TYPES]
    if bad:
        raise ValueError(f"unknown event type {bad[0]!r}; one of {', '.join(ev.LIFECYCLE_TYPES)}")
    return sorted(set(v))


def _url(v: str | None) -> str | None:
    if v is not None:
        if len(v) > 2000:
            raise ValueError("at most 2000 characters")
        check_url_shape(v)
    return v


class _WebhookChecks(BaseModel):
    """The url and events rules, shared by create and update."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("url", check_fields=False)
    @classmethod
    def check_url(cls, v):
        return _url(v)

    @field_validator("events", check_fields=False)
    @classmethod
    def check_events(cls, v):
        return _events(v)


class WebhookCreate(_WebhookChecks):
    url: str = Field(examples=["https://example.com/webhooks/email"])
    events: list[str] = Field(examples=[["delivered", "bounced", "complained"]])


class WebhookUpdate(_WebhookChecks):
    url: str | None = None
    events: list[str] | None = None
    status: str | None = Field(None, pattern="^(enabled|disabled)$")
    rotate_secret: bool = False


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: str | None = Field(None, max_length=64)
    since: datetime | None = None
    until: datetime | None = None

    @model_validator(mode="after")
    def _one(self):
        if not self.event_id and not self.since:
            raise ValueError("event_id: give event_id, or since (and optionally until)")
        return self


class WebhookView(BaseModel):
    id: str
    url: str
    events: list[str]
    status: str
    disabled_reason: str | None
    created_at: str
    secret: str | None = Field(None, description="Only in the response that created or rotated it.")


def view(w: ev.WebhookSaved, secret: str | None = None) -> dict:
    return {"id": w.webhook_id, "url": w.url, "events": w.events, "status": w.status,
            "disabled_reason": w.disabled_reason, "created_at": w.created_at.isoformat(), "secret": secret}


async def check_destination(rt, url: str) -> None:
    _, host, port = check_url_shape(url)
    try:
        await resolve_checked(host, port, rt.settings.webhook_allow_private)
    except BlockedDestination as exc:
        raise HTTPException(400, f"url: {exc}") from None


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def owned_webhook(webhook_id: str, svc=Depends(owned_service), rt=Depends(runtime)) -> ev.WebhookSaved:
    w = rt.control.state.webhooks.get(webhook_id)
    if w is None or w.service_id != svc.service_id:
        raise HTTPException(404, f"webhook {webhook_id} not found")
    return w


@router.post("", status_code=201, response_model=WebhookView)
async def create_webhook(body: WebhookCreate, svc=Depends(owned_service), rt=Depends(runtime)):
    await check_destination(rt, body.url)
    wid, secret = ev.new_id(), new_secret()
    w = ev.WebhookSaved(workspace_id=svc.workspace_id, service_id=svc.service_id, webhook_id=wid, url=body.url,
                        events=body.events, secret_sealed=seal(rt.settings.master_key, secret.encode(), wid),
                        created_at=ev.utcnow())
    await rt.control.save(w)
    return view(w, secret)


@router.get("", response_model=dict[str, list[WebhookView]])
async def list_webhooks(svc=Depends(owned_service), rt=Depends(runtime)):
    return {"data": [view(w) for w in rt.control.state.webhooks_of(svc.service_id)]}


@router.get("/{webhook_id}", response_model=WebhookView)
async def get_webhook(w=Depends(owned_webhook)):
    return view(w)


@router.patch("/{webhook_id}", response_model=WebhookView)
async def update_webhook(body: WebhookUpdate, w=Depends(owned_webhook), rt=Depends(runtime)):
    changes: dict = {}
    if body.url is not None:
        await check_destination(rt, body.url)
        changes["url"] = body.url
    if body.events is not None:
        changes["events"] = body.events
    if body.status is not None:
        changes["status"] = body.status
        changes["disabled_reason"] = None if body.status == "enabled" else "disabled by user"
    secret = None
    if body.rotate_secret:
        secret = new_secret()
        changes.update(secret_sealed=seal(rt.settings.master_key, secret.encode(), w.webhook_id),
                       previous_secret_sealed=w.secret_sealed,
                       previous_until=datetime.now(timezone.utc) + ROTATION_OVERLAP)
    if not changes:
        return view(w)
    # a rotation sets previous_secret_sealed from this view: a concurrent rotation is a 409
    return view(await rt.control.change(w, **changes), secret)


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(w=Depends(owned_webhook), rt=Depends(runtime)):
    await rt.control.change(w, deleted=True)


@router.get("/{webhook_id}/attempts")
async def list_attempts(limit: int = Query(50, ge=1, le=500), w=Depends(owned_webhook), rt=Depends(runtime)):
    """Recent delivery attempts, newest first, with status code and latency."""
    if rt.store is None:
        raise HTTPException(503, "analytics store not configured on this process")
    rows = await queries.webhook_attempts(rt.store, w.service_id, w.webhook_id, limit)
    return {"data": [{**r, "status_code": r["status_code"] or None} for r in rows]}


async def _append_replay(rt, w: ev.WebhookSaved, events: list[dict]) -> dict:
    replay = ev.WebhookReplay(workspace_id=w.workspace_id, service_id=w.service_id, webhook_id=w.webhook_id,
                              events=events)
    await rt.log.append(ev.Topic.EVENTS, w.webhook_id, ev.encode(replay))
    return {"replay_id": replay.id, "events": len(events)}


@router.post("/{webhook_id}/replay", status_code=202)
async def replay(body: ReplayRequest, w=Depends(owned_webhook), rt=Depends(runtime)):
    """Send one event (``event_id``) or every subscribed event in a time range again."""
    if rt.store is None:
        raise HTTPException(503, "analytics store not configured on this process")
    events = await queries.events_to_replay(rt.store, w.service_id, MAX_REPLAY, event_id=body.event_id,
                                            since=body.since, until=body.until, types=w.events)
    if body.event_id and not events:
        raise HTTPException(404, f"event {body.event_id} not found")
    return await _append_replay(rt, w, events)


@router.post("/{webhook_id}/test", status_code=202)
async def send_test(w=Depends(owned_webhook), rt=Depends(runtime)):
    """Send a sample ``delivered`` event (email id ``test-…``) to the endpoint."""
    sample = ev.Delivered(workspace_id=w.workspace_id, service_id=w.service_id, email_id=f"test-{ev.new_id()}",
                          recipient="test@example.com", subject="Postline test event", smtp_code=250,
                          smtp_reply="250 2.0.0 OK (test)", **{"from": "test@postline.localhost"})
    return await _append_replay(rt, w, [sample.model_dump(mode="json", by_alias=True)])
