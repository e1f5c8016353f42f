"""Webhook endpoints of a service: create (the signing secret is returned once), change
(url, events, status, secret rotation with an overlap), delete, delivery attempts, replay
of past events, a test event."""
from __future__ import annotations

import base64
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from services.api.manage import changed, deleted
from services.api.manage.webhook_inputs import ReplayRequest, WebhookCreate, WebhookUpdate
from services.api.refusal import Refusal
from shared import events as ev
from shared.control import webhook_failures
from shared.crypto import seal
from services.api.context import ApiContext
from shared.ssrf import BlockedDestination, Unresolvable, check_url_shape, resolve_checked
from shared.store import queries

ROTATION_OVERLAP = timedelta(hours=24)
MAX_REPLAY = 1000
NO_STORE = Refusal(503, "analytics store not configured on this process")


def view(w: ev.WebhookSaved, secret: str | None = None) -> dict[str, Any]:
    return {"id": w.webhook_id, "url": w.url, "events": w.events, "status": w.status,
            "disabled_reason": w.disabled_reason, "created_at": w.created_at.isoformat(), "secret": secret}


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def find_webhook(rt: ApiContext, svc: ev.ServiceSaved, webhook_id: str) -> ev.WebhookSaved | Refusal:
    w = rt.control.state.webhooks.get(webhook_id)
    if w is None or w.service_id != svc.service_id:
        return Refusal(404, f"webhook {webhook_id} not found")
    return w


async def check_destination(rt: ApiContext, url: str) -> Refusal | None:
    """400 when ``url``'s host resolves to an address webhooks may not reach (a private one,
    unless POSTLINE_WEBHOOK_ALLOW_PRIVATE), said early. A host that does not resolve now is
    accepted, as the peers do (a name about to be published, DNS unreachable from here):
    every delivery checks the address again before it connects (shared/ssrf.py ``pinned``),
    so this lookup protects nothing, and none is made when private addresses are allowed."""
    _, host, port = check_url_shape(url)
    if rt.settings.webhook_allow_private:
        return None
    try:
        await resolve_checked(host, port, allow_private=False)
    except Unresolvable:
        return None
    except BlockedDestination as exc:
        return Refusal(400, str(exc), "url")
    return None


async def create_webhook(rt: ApiContext, svc: ev.ServiceSaved, body: WebhookCreate) -> dict[str, Any] | Refusal:
    if refused := await check_destination(rt, body.url):
        return refused
    wid, secret = ev.new_id(), new_secret()
    w = ev.WebhookSaved(workspace_id=svc.workspace_id, service_id=svc.service_id, webhook_id=wid, url=body.url,
                        events=body.events, secret_sealed=seal(rt.settings.master_key, secret.encode(), wid),
                        created_at=ev.utcnow())
    await rt.control.save(w)
    return view(w, secret)


async def update_webhook(rt: ApiContext, w: ev.WebhookSaved, body: WebhookUpdate) -> dict[str, Any] | Refusal:
    """The fields given; a rotation returns the new secret once and keeps the old one valid
    for ``ROTATION_OVERLAP`` (a concurrent rotation is a 409: it sets the previous secret)."""
    changes: dict[str, Any] = {}
    if body.url is not None:
        if refused := await check_destination(rt, body.url):
            return refused
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
    updated = await changed(rt, w, **changes)
    if isinstance(updated, Refusal):
        return updated
    if body.status == "enabled" and w.status == "disabled":
        # enabled again: the failures before do not count. A change of its own, so a count a
        # webhooks process writes meanwhile never turns the caller's change into a 409.
        await webhook_failures.count(rt.control, w.webhook_id, failed=False)
    return view(updated, secret)


async def delete_webhook(rt: ApiContext, w: ev.WebhookSaved) -> Refusal | None:
    return await deleted(rt, w)


async def attempts(rt: ApiContext, w: ev.WebhookSaved, limit: int, event_id: str | None = None
                   ) -> list[dict[str, Any]] | Refusal:
    """Recent delivery attempts (of one event, when ``event_id``), newest first (503 without
    an analytics store; the store's errors propagate)."""
    if rt.store is None:
        return NO_STORE
    rows = await queries.webhook_attempts(rt.store, w.service_id, w.webhook_id, limit, event_id)
    return [{**r, "status_code": r["status_code"] or None} for r in rows]


async def events(rt: ApiContext, w: ev.WebhookSaved, limit: int) -> list[dict[str, Any]] | Refusal:
    """The events sent to the endpoint, newest first, with their latest ``outcome``
    (``delivered``, ``retrying``, ``failed``, ``disabled``, ``skipped``: not tried, the endpoint
    was disabled meanwhile); 503 without an analytics store."""
    if rt.store is None:
        return NO_STORE
    return await queries.webhook_events(rt.store, w.service_id, w.webhook_id, limit)


async def event(rt: ApiContext, w: ev.WebhookSaved, event_id: str) -> tuple[dict[str, Any], dict[str, Any]] | Refusal:
    """One event sent to the endpoint: its payload and its latest attempt; 404 when it was
    not sent there."""
    tried = await attempts(rt, w, 1, event_id)
    if isinstance(tried, Refusal) or not tried:
        return tried if isinstance(tried, Refusal) else Refusal(404, f"event {event_id} not found")
    payloads = await queries.events_to_replay(rt.store, w.service_id, 1, event_id=event_id) if rt.store else []
    return (payloads[0] if payloads else {}), tried[0]


async def replay(rt: ApiContext, w: ev.WebhookSaved, body: ReplayRequest) -> dict[str, Any] | Refusal:
    """Send one event (``event_id``, 404 when unknown, 400 when the endpoint is not subscribed
    to its type: an endpoint gets only what it subscribed to) or every subscribed event in a
    time range again; 409 while the endpoint is disabled (nothing would be sent)."""
    if refused := _disabled(w):
        return refused
    if rt.store is None:
        return NO_STORE
    events = await queries.events_to_replay(rt.store, w.service_id, MAX_REPLAY, event_id=body.event_id,
                                            since=body.since, until=body.until, types=w.events)
    if body.event_id and not events:
        return Refusal(404, f"event {body.event_id} not found")
    if body.event_id and (kind := events[0].get("type")) not in w.events:
        return Refusal(400, f"the endpoint is not subscribed to {kind} events (it gets {', '.join(w.events)})",
                       field="event_id")
    return await _append_replay(rt, w, events)


def _disabled(w: ev.WebhookSaved) -> Refusal | None:
    """409 for an endpoint that is not enabled: its deliveries are skipped, so a test or replay
    answered 202 would send nothing and say nothing."""
    if w.status != "enabled":
        return Refusal(409, f"the endpoint is {w.status}; enable it (status: enabled) to send it events", field="status")
    return None


async def send_test(rt: ApiContext, w: ev.WebhookSaved) -> dict[str, Any] | Refusal:
    """Send a sample ``delivered`` event (email id ``test-…``) to the endpoint (409 while it is disabled)."""
    if refused := _disabled(w):
        return refused
    sample = ev.Delivered(workspace_id=w.workspace_id, service_id=w.service_id, email_id=f"test-{ev.new_id()}",
                          recipient="test@example.com", subject="Postline test event", smtp_code=250,
                          smtp_reply="250 2.0.0 OK (test)", **{"from": "test@postline.localhost"})
    return await _append_replay(rt, w, [sample.model_dump(mode="json", by_alias=True)])


async def _append_replay(rt: ApiContext, w: ev.WebhookSaved, events: list[dict[str, Any]]) -> dict[str, Any]:
    replay_ = ev.WebhookReplay(workspace_id=w.workspace_id, service_id=w.service_id, webhook_id=w.webhook_id,
                               events=events)
    await rt.log.append(ev.Topic.EVENTS, w.webhook_id, ev.encode(replay_))
    return {"replay_id": replay_.id, "events": len(events)}
