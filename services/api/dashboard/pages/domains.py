"""A service's domains: add, the DNS records to publish, verify now (per-record result),
receive mail (docs/receiving.md), remove."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.dashboard.pages.owned import owned
from services.api.dashboard.web import (BAD_INPUT, Caller, caller, form, or_error_page, page, problem, redirect,
                                        service_of)
from services.api.manage import domains as manage
from services.api.refusal import Refusal
from services.api.schemas import DomainCreate
from shared import events as ev

router = APIRouter(include_in_schema=False)


def _domains(request: Request, c: Caller, svc: ev.ServiceSaved, status: int = 200,
             error: str | None = None) -> HTMLResponse:
    items = manage.list_domains(c.rt, svc)
    return page(request, "domains.html", status=status, c=c, svc=svc, domains=items, error=error, tab="domains")


@router.get("/services/{service_id}/domains")
async def domains_page(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    return _domains(request, c, service_of(c, service_id))


@router.post("/services/{service_id}/domains")
async def domain_add(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    data = await form(request, c)
    svc = service_of(c, service_id)
    try:
        body = DomainCreate(domain=data.get("domain", ""))
    except BAD_INPUT as exc:
        return _domains(request, c, svc, 400, problem(exc))
    d = await manage.add_domain(c.rt, svc, body.domain, body.tracking_host)
    if isinstance(d, Refusal):
        return _domains(request, c, svc, 400, problem(d))
    return redirect(f"/services/{service_id}/domains/{d['id']}")


@router.get("/services/{service_id}/domains/{domain_id}")
async def domain_page(request: Request, service_id: str, domain_id: str, c: Caller = Depends(caller)) -> Response:
    svc = service_of(c, service_id)
    d = owned(c.rt.control.state.domains, domain_id, svc, "domain")
    return page(request, "domain.html", c=c, svc=svc, d=manage.domain_view(d, c.rt.settings), tab="domains")


@router.post("/services/{service_id}/domains/{domain_id}/verify")
async def domain_verify(request: Request, service_id: str, domain_id: str, c: Caller = Depends(caller)) -> Response:
    """Look the records up now and show each one's result (found / missing / mismatch)."""
    await form(request, c)
    svc = service_of(c, service_id)
    d = owned(c.rt.control.state.domains, domain_id, svc, "domain")
    view = or_error_page(await manage.verify_domain(c.rt, d))
    return page(request, "domain.html", c=c, svc=svc, d=view, checked=True, tab="domains")


@router.post("/services/{service_id}/domains/{domain_id}/receiving")
async def domain_receiving(request: Request, service_id: str, domain_id: str, c: Caller = Depends(caller)) -> Response:
    """Turn receiving mail on (``on=true``) or off; the MX record joins the records."""
    data = await form(request, c)
    svc = service_of(c, service_id)
    d = owned(c.rt.control.state.domains, domain_id, svc, "domain")
    or_error_page(await manage.set_receiving(c.rt, d, data.get("on") == "true"))
    return redirect(f"/services/{service_id}/domains/{domain_id}")


@router.post("/services/{service_id}/domains/{domain_id}/delete")
async def domain_delete(request: Request, service_id: str, domain_id: str, c: Caller = Depends(caller)) -> Response:
    await form(request, c)
    svc = service_of(c, service_id)
    or_error_page(await manage.delete_domain(c.rt, owned(c.rt.control.state.domains, domain_id, svc, "domain")))
    return redirect(f"/services/{service_id}/domains")
