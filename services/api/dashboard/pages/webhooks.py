"""A service's webhooks: create (the secret is shown once), attempts with status code and
latency, replay one event, send a test event, delete."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.dashboard.pages.owned import owned
from services.api.dashboard.web import (BAD_INPUT, Caller, caller, form, or_error_page, page, problem, redirect,
                                        service_of)
from services.api.manage import webhooks as manage
from services.api.manage.webhook_inputs import ReplayRequest, WebhookCreate
from services.api.refusal import Refusal
from shared import events as ev

router = APIRouter(include_in_schema=False)


def _webhooks(request: Request, c: Caller, svc: ev.ServiceSaved, status: int = 200, error: str | None = None,
              created: dict[str, Any] | None = None) -> HTMLResponse:
    items = [manage.view(w) for w in c.rt.control.state.webhooks_of(svc.service_id)]
    return page(request, "webhooks.html", status=status, c=c, svc=svc, webhooks=items, created=created, error=error,
                event_types=ev.WEBHOOK_TYPES, tab="webhooks")


@router.get("/services/{service_id}/webhooks")
async def webhooks_page(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    return _webhooks(request, c, service_of(c, service_id))


@router.post("/services/{service_id}/webhooks")
async def webhook_create(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    """Create an endpoint; its signing secret is shown in this one response."""
    data = await form(request, c)
    events = [e for e in (await request.form()).getlist("events") if isinstance(e, str)]
    svc = service_of(c, service_id)
    try:
        body = WebhookCreate(url=str(data.get("url", "")).strip(), events=events)
    except BAD_INPUT as exc:
        return _webhooks(request, c, svc, 400, problem(exc))
    created = await manage.create_webhook(c.rt, svc, body)
    if isinstance(created, Refusal):
        return _webhooks(request, c, svc, 400, problem(created))
    return _webhooks(request, c, svc, 201, created=created)


async def _attempts(c: Caller, w: ev.WebhookSaved) -> list[dict] | None:
    try:
        found = await manage.attempts(c.rt, w, 50)
    except Exception:  # the analytics store is down: the page shows the rest
        return None
    return None if isinstance(found, Refusal) else found  # a refusal: no analytics store on this process


async def _webhook(request: Request, c: Caller, service_id: str, webhook_id: str, status: int = 200,
                   notice: str | None = None, error: str | None = None) -> HTMLResponse:
    svc = service_of(c, service_id)
    w = owned(c.rt.control.state.webhooks, webhook_id, svc, "webhook")
    return page(request, "webhook.html", status=status, c=c, svc=svc, w=manage.view(w),
                attempts=await _attempts(c, w), notice=notice, error=error, tab="webhooks")


@router.get("/services/{service_id}/webhooks/{webhook_id}")
async def webhook_page(request: Request, service_id: str, webhook_id: str, c: Caller = Depends(caller)) -> Response:
    return await _webhook(request, c, service_id, webhook_id)


@router.post("/services/{service_id}/webhooks/{webhook_id}/test")
async def webhook_test(request: Request, service_id: str, webhook_id: str, c: Caller = Depends(caller)) -> Response:
    await form(request, c)
    w = owned(c.rt.control.state.webhooks, webhook_id, service_of(c, service_id), "webhook")
    sent = await manage.send_test(c.rt, w)
    if isinstance(sent, Refusal):
        return await _webhook(request, c, service_id, webhook_id, sent.status, error=problem(sent))
    return await _webhook(request, c, service_id, webhook_id, 202, notice="A test event is on its way.")


@router.post("/services/{service_id}/webhooks/{webhook_id}/replay")
async def webhook_replay(request: Request, service_id: str, webhook_id: str, c: Caller = Depends(caller)) -> Response:
    data = await form(request, c)
    w = owned(c.rt.control.state.webhooks, webhook_id, service_of(c, service_id), "webhook")
    try:
        body = ReplayRequest(event_id=data.get("event_id") or None)
    except BAD_INPUT as exc:
        return await _webhook(request, c, service_id, webhook_id, 400, error=problem(exc))
    done = await manage.replay(c.rt, w, body)
    if isinstance(done, Refusal):
        return await _webhook(request, c, service_id, webhook_id, done.status, error=problem(done))
    return await _webhook(request, c, service_id, webhook_id, 202, notice=f"Replaying {done['events']} event(s).")


@router.post("/services/{service_id}/webhooks/{webhook_id}/delete")
async def webhook_delete(request: Request, service_id: str, webhook_id: str, c: Caller = Depends(caller)) -> Response:
    await form(request, c)
    w = owned(c.rt.control.state.webhooks, webhook_id, service_of(c, service_id), "webhook")
    or_error_page(await manage.delete_webhook(c.rt, w))
    return redirect(f"/services/{service_id}/webhooks")
