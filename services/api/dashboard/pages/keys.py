"""A service's API keys: create (the secret is shown once; sending or full access, optionally one
domain), list, revoke."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.dashboard.pages.owned import owned
from services.api.dashboard.web import (BAD_INPUT, Caller, caller, form, or_error_page, page, problem, redirect,
                                        service_of)
from services.api.manage import keys as manage
from services.api.refusal import Refusal
from services.api.schemas import ApiKeyCreate
from shared import events as ev

router = APIRouter(include_in_schema=False)


def _keys(request: Request, c: Caller, svc: ev.ServiceSaved, status: int = 200, error: str | None = None,
          created: dict[str, Any] | None = None) -> HTMLResponse:
    items = manage.list_keys(c.rt, svc)
    domains = {d.domain_id: d.domain for d in c.rt.control.state.domains_of(svc.service_id)}
    return page(request, "keys.html", status=status, c=c, svc=svc, keys=items, created=created, error=error,
                domains=domains, tab="keys")


@router.get("/services/{service_id}/keys")
async def keys_page(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    return _keys(request, c, service_of(c, service_id))


@router.post("/services/{service_id}/keys")
async def key_create(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    """Create a key and show its secret in this one response (it is not stored)."""
    data = await form(request, c)
    svc = service_of(c, service_id)
    try:
        body = ApiKeyCreate(name=data.get("name", "").strip(), permission=data.get("permission") or "sending_access",
                            domain_id=data.get("domain_id") or None)
    except BAD_INPUT as exc:
        return _keys(request, c, svc, 400, problem(exc))
    created = await manage.create_key(c.rt, svc, body)
    if isinstance(created, Refusal):
        return _keys(request, c, svc, created.status, created.text)
    return _keys(request, c, svc, 201, created=created)


@router.post("/services/{service_id}/keys/{key_id}/revoke")
async def key_revoke(request: Request, service_id: str, key_id: str, c: Caller = Depends(caller)) -> Response:
    await form(request, c)
    svc = service_of(c, service_id)
    owned(c.rt.control.state.api_keys, key_id, svc, "API key")
    or_error_page(await manage.revoke_key(c.rt, svc, key_id))
    return redirect(f"/services/{service_id}/keys")
