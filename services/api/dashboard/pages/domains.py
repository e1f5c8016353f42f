"""A service's domains: add, the DNS records to publish, verify now (per-record result), remove."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from services.api.dashboard.pages.owned import owned
from services.api.dashboard.web import BAD_INPUT, Caller, caller, form, page, problem, redirect, service_of
from services.api.routes import domains as domains_api
from services.api.schemas import DomainCreate

router = APIRouter(include_in_schema=False)


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
    d = owned(c.rt.control.state.domains, domain_id, svc, "domain")
    return page(request, "domain.html", c=c, svc=svc, d=domains_api.domain_view(d, c.rt.settings), tab="domains")


@router.post("/services/{service_id}/domains/{domain_id}/verify")
async def domain_verify(request: Request, service_id: str, domain_id: str, c: Caller = Depends(caller)):
    """Look the records up now and show each one's result (found / missing / mismatch)."""
    await form(request, c)
    svc = service_of(c, service_id)
    d = owned(c.rt.control.state.domains, domain_id, svc, "domain")
    view = await domains_api.verify_domain(d=d, rt=c.rt)
    return page(request, "domain.html", c=c, svc=svc, d=view, checked=True, tab="domains")


@router.post("/services/{service_id}/domains/{domain_id}/delete")
async def domain_delete(request: Request, service_id: str, domain_id: str, c: Caller = Depends(caller)):
    await form(request, c)
    svc = service_of(c, service_id)
    await domains_api.delete_domain(d=owned(c.rt.control.state.domains, domain_id, svc, "domain"), rt=c.rt)
    return redirect(f"/services/{service_id}/domains")
