"""A service's setup pages: domains, API keys, sandbox recipients and webhooks.

Each action calls the JSON API's own route function, so the rules (validation, DKIM keys,
SSRF checks, show-once secrets) are the same; their errors are shown on the page."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import ValidationError

from services.api.dashboard.web import Caller, PageError, caller, form, page, problem, redirect, service_of
from services.api.routes import domains as domains_api
from services.api.routes import keys as keys_api
from services.api.routes import sandbox as sandbox_api
from services.api.routes import webhooks as webhooks_api
from services.api.schemas import ApiKeyCreate, DomainCreate, SandboxEmailCreate
from shared import events as ev

router = APIRouter(include_in_schema=False)
BAD_INPUT = (ValidationError, HTTPException)


def _owned(table: dict, ident: str, svc: ev.ServiceSaved, what: str):
    rec = table.get(ident)
    if rec is None or rec.service_id != svc.service_id:
        raise PageError(404, f"This {what} does not exist.")
    return rec


# ------------------------------------------------------------------ domains
def _domains(request, c, svc, status=200, error=None):
    items = [domains_api.domain_view(d, c.rt.settings) for d in c.rt.control.state.domains_of(svc.service_id)]
    return page(request, "domains.html", status=status, c=c, svc=svc, domains=items, error=error, tab="domains")


@router.get("/services/{service_id}/domains")
async def domains_page(request: Request, service_id: str, c: Caller = Depends(caller)):
    return _domains(request, c, service_of(c, service_id))


@router.post("/services/{service_id}/domains")
async def domain_add(request: Request, service_id: str, c: Caller = Depends(caller)):
    data = await form(request, c)
    svc = service_of(c, service_id)
    try:
        d = await domains_api.add_domain(DomainCreate(domain=data.get("domain", "")), svc=svc, rt=c.rt)
    except BAD_INPUT as exc:
        return _domains(request, c, svc, 400, problem(exc))
    return redirect(f"/services/{service_id}/domains/{d['id']}")


@router.get("/services/{service_id}/domains/{domain_id}")
async def domain_page(request: Request, service_id: str, domain_id: str, c: Caller = Depends(caller)):
    svc = service_of(c, service_id)
    d = _owned(c.rt.control.state.domains, domain_id, svc, "domain")
    return page(request, "domain.html", c=c, svc=svc, d=domains_api.domain_view(d, c.rt.settings), tab="domains")


@router.post("/services/{service_id}/domains/{domain_id}/verify")
async def domain_verify(request: Request, service_id: str, domain_id: str, c: Caller = Depends(caller)):
    """Look the records up now and show each one's result (found / missing / mismatch)."""
    await form(request, c)
    svc = service_of(c, service_id)
    d = _owned(c.rt.control.state.domains, domain_id, svc, "domain")
    view = await domains_api.verify_domain(d=d, rt=c.rt)
    return page(request, "domain.html", c=c, svc=svc, d=view, checked=True, tab="domains")


@router.post("/services/{service_id}/domains/{domain_id}/delete")
async def domain_delete(request: Request, service_id: str, domain_id: str, c: Caller = Depends(caller)):
    await form(request, c)
    svc = service_of(c, service_id)
    await domains_api.delete_domain(d=_owned(c.rt.control.state.domains, domain_id, svc, "domain"), rt=c.rt)
    return redirect(f"/services/{service_id}/domains")


# ------------------------------------------------------------------ API keys
def _keys(request, c, svc, status=200, error=None, created=None):
    items = [keys_api.key_view(k) for k in c.rt.control.state.keys_of(svc.service_id)]
    return page(request, "keys.html", status=status, c=c, svc=svc, keys=items, created=created, error=error,
                tab="keys")


@router.get("/services/{service_id}/keys")
async def keys_page(request: Request, service_id: str, c: Caller = Depends(caller)):
    return _keys(request, c, service_of(c, service_id))


@router.post("/services/{service_id}/keys")
async def key_create(request: Request, service_id: str, c: Caller = Depends(caller)):
    """Create a key and show its secret in this one response (it is not stored)."""
    data = await form(request, c)
    svc = service_of(c, service_id)
    try:
        created = await keys_api.create_key(ApiKeyCreate(name=data.get("name", "").strip()), svc=svc, rt=c.rt)
    except BAD_INPUT as exc:
        return _keys(request, c, svc, 400, problem(exc))
    return _keys(request, c, svc, 201, created=created)


@router.post("/services/{service_id}/keys/{key_id}/revoke")
async def key_revoke(request: Request, service_id: str, key_id: str, c: Caller = Depends(caller)):
    await form(request, c)
    svc = service_of(c, service_id)
    _owned(c.rt.control.state.api_keys, key_id, svc, "API key")
    await keys_api.revoke_key(key_id, svc=svc, rt=c.rt)
    return redirect(f"/services/{service_id}/keys")


# ------------------------------------------------------------------ sandbox recipients
def _sandbox(request, c, svc, status=200, error=None, notice=None):
    items = [sandbox_api.recipient_view(r) for r in c.rt.control.state.sandbox_of(svc.service_id)]
    return page(request, "sandbox.html", status=status, c=c, svc=svc, recipients=items, error=error, notice=notice,
                tab="sandbox")


@router.get("/services/{service_id}/sandbox")
async def sandbox_page(request: Request, service_id: str, c: Caller = Depends(caller)):
    return _sandbox(request, c, service_of(c, service_id))


@router.post("/services/{service_id}/sandbox")
async def sandbox_add(request: Request, service_id: str, c: Caller = Depends(caller)):
    data = await form(request, c)
    svc = service_of(c, service_id)
    try:
        r = await sandbox_api.add_sandbox_email(SandboxEmailCreate(email=data.get("email", "")), svc=svc, rt=c.rt)
    except BAD_INPUT as exc:
        return _sandbox(request, c, svc, 400, problem(exc))
    notice = (f"{r['email']} is already verified." if r["verified"]
              else f"A confirmation link was mailed to {r['email']}.")
    return _sandbox(request, c, svc, 201, notice=notice)


@router.post("/services/{service_id}/sandbox/{recipient_id}/delete")
async def sandbox_remove(request: Request, service_id: str, recipient_id: str, c: Caller = Depends(caller)):
    await form(request, c)
    svc = service_of(c, service_id)
    _owned(c.rt.control.state.sandbox, recipient_id, svc, "sandbox recipient")
    await sandbox_api.delete_sandbox_email(recipient_id, svc=svc, rt=c.rt)
    return redirect(f"/services/{service_id}/sandbox")


# ------------------------------------------------------------------ webhooks
def _webhooks(request, c, svc, status=200, error=None, created=None):
    items = [webhooks_api.view(w) for w in c.rt.control.state.webhooks_of(svc.service_id)]
    return page(request, "webhooks.html", status=status, c=c, svc=svc, webhooks=items, created=created, error=error,
                event_types=ev.LIFECYCLE_TYPES, tab="webhooks")


@router.get("/services/{service_id}/webhooks")
async def webhooks_page(request: Request, service_id: str, c: Caller = Depends(caller)):
    return _webhooks(request, c, service_of(c, service_id))


@router.post("/services/{service_id}/webhooks")
async def webhook_create(request: Request, service_id: str, c: Caller = Depends(caller)):
    """Create an endpoint; its signing secret is shown in this one response."""
    data = await form(request, c)
    events = [e for e in (await request.form()).getlist("events") if isinstance(e, str)]
    svc = service_of(c, service_id)
    try:
        body = webhooks_api.WebhookCreate(url=str(data.get("url", "")).strip(), events=events)
        created = await webhooks_api.create_webhook(body, svc=svc, rt=c.rt)
    except BAD_INPUT as exc:
        return _webhooks(request, c, svc, 400, problem(exc))
    return _webhooks(request, c, svc, 201, created=created)


async def _attempts(c: Caller, w: ev.WebhookSaved) -> list[dict] | None:
    try:
        return (await webhooks_api.list_attempts(limit=50, w=w, rt=c.rt))["data"]
    except Exception:  # no analytics store on this process, or it is down
        return None


async def _webhook(request, c, service_id: str, webhook_id: str, status=200, notice=None, error=None):
    svc = service_of(c, service_id)
    w = _owned(c.rt.control.state.webhooks, webhook_id, svc, "webhook")
    return page(request, "webhook.html", status=status, c=c, svc=svc, w=webhooks_api.view(w),
                attempts=await _attempts(c, w), notice=notice, error=error, tab="webhooks")


@router.get("/services/{service_id}/webhooks/{webhook_id}")
async def webhook_page(request: Request, service_id: str, webhook_id: str, c: Caller = Depends(caller)):
    return await _webhook(request, c, service_id, webhook_id)


@router.post("/services/{service_id}/webhooks/{webhook_id}/test")
async def webhook_test(request: Request, service_id: str, webhook_id: str, c: Caller = Depends(caller)):
    await form(request, c)
    w = _owned(c.rt.control.state.webhooks, webhook_id, service_of(c, service_id), "webhook")
    await webhooks_api.send_test(w=w, rt=c.rt)
    return await _webhook(request, c, service_id, webhook_id, 202, notice="A test event is on its way.")


@router.post("/services/{service_id}/webhooks/{webhook_id}/replay")
async def webhook_replay(request: Request, service_id: str, webhook_id: str, c: Caller = Depends(caller)):
    data = await form(request, c)
    w = _owned(c.rt.control.state.webhooks, webhook_id, service_of(c, service_id), "webhook")
    try:
        done = await webhooks_api.replay(webhooks_api.ReplayRequest(event_id=data.get("event_id") or None), w=w, rt=c.rt)
    except BAD_INPUT as exc:
        return await _webhook(request, c, service_id, webhook_id, 400, error=problem(exc))
    return await _webhook(request, c, service_id, webhook_id, 202, notice=f"Replaying {done['events']} event(s).")


@router.post("/services/{service_id}/webhooks/{webhook_id}/delete")
async def webhook_delete(request: Request, service_id: str, webhook_id: str, c: Caller = Depends(caller)):
    await form(request, c)
    w = _owned(c.rt.control.state.webhooks, webhook_id, service_of(c, service_id), "webhook")
    await webhooks_api.delete_webhook(w=w, rt=c.rt)
    return redirect(f"/services/{service_id}/webhooks")
