"""Resend's ``/domains`` for a full-access key: the service's own sending domains
(services/api/manage/domains.py) in Resend's shapes (domain_shapes.py)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.api.auth import ServiceCaller, full_access_key, runtime
from services.api.context import ApiContext
from services.api.errors import unless_refused
from services.api.manage import domains as manage
from services.api.routes.resend.domain_shapes import (ResendDomainCreate, ResendDomainUpdate, domain_view, listed,
                                                      tracking_host, unoffered)
from services.api.routes.resend.paging import Paging, newest_first_page, paging
from shared import events as ev

router = APIRouter(prefix="/domains", tags=["resend: domains"])


async def own_domain(domain_id: str, caller: ServiceCaller = Depends(full_access_key),
                     rt: ApiContext = Depends(runtime)) -> ev.DomainSaved:
    return unless_refused(manage.find_domain(rt, caller.service, domain_id))


@router.post("", status_code=201)
async def add_domain(body: ResendDomainCreate, caller: ServiceCaller = Depends(full_access_key),
                     rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """`{name}` → the domain with the DNS records to publish (a DKIM key pair is made now)."""
    unless_refused(unoffered(body))
    name = body.name.strip().lower()
    added = unless_refused(await manage.add_domain(rt, caller.service, name, tracking_host(body.tracking_subdomain, name)))
    return domain_view(unless_refused(manage.find_domain(rt, caller.service, added["id"])), rt.settings)


@router.get("")
async def list_domains(p: Paging = Depends(paging), caller: ServiceCaller = Depends(full_access_key),
                       rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return newest_first_page(rt.control.state.domains_of(caller.service.service_id), lambda d: d.created_at,
                             lambda d: d.domain_id, listed, p)


@router.get("/{domain_id}")
async def get_domain(d: ev.DomainSaved = Depends(own_domain), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return domain_view(d, rt.settings)


@router.patch("/{domain_id}")
async def update_domain(body: ResendDomainUpdate, d: ev.DomainSaved = Depends(own_domain),
                        rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """`tracking_subdomain` sets (null removes) the domain's tracking host."""
    unless_refused(unoffered(body))
    if "tracking_subdomain" in body.model_fields_set:
        unless_refused(await manage.set_tracking_host(rt, d, tracking_host(body.tracking_subdomain, d.domain)))
    return {"object": "domain", "id": d.domain_id}


@router.post("/{domain_id}/verify")
async def verify_domain(d: ev.DomainSaved = Depends(own_domain), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Looks the records up now (Resend starts an asynchronous check; Postline's is done when
    it answers: `GET /domains/{id}` then shows each record's status)."""
    unless_refused(await manage.verify_domain(rt, d))
    return {"object": "domain", "id": d.domain_id}


@router.delete("/{domain_id}")
async def delete_domain(d: ev.DomainSaved = Depends(own_domain), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    unless_refused(await manage.delete_domain(rt, d))
    return {"object": "domain", "id": d.domain_id, "deleted": True}
