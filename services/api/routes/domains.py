"""Sending domains: DKIM keys generated on add, DNS records to publish, verification (the
HTTP doors of services/api/manage/domains.py)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.api.auth import owned_service, runtime
from services.api.errors import unless_refused
from services.api.manage import domains as manage
from services.api.schemas import DomainCreate, DomainList, DomainUpdate, DomainView
from shared import events as ev
from services.api.context import ApiContext

router = APIRouter(prefix="/api/email/services/{service_id}/domains", tags=["domains"])


async def owned_domain(domain_id: str, svc: ev.ServiceSaved = Depends(owned_service),
                       rt: ApiContext = Depends(runtime)) -> ev.DomainSaved:
    return unless_refused(manage.find_domain(rt, svc, domain_id))


@router.post("", status_code=201, response_model=DomainView, response_model_exclude_none=True)
async def add_domain(body: DomainCreate, svc: ev.ServiceSaved = Depends(owned_service),
                     rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.add_domain(rt, svc, body.domain, body.tracking_host, body.return_path))


@router.get("", response_model=DomainList, response_model_exclude_none=True)
async def list_domains(svc: ev.ServiceSaved = Depends(owned_service), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return {"data": manage.list_domains(rt, svc)}


@router.get("/{domain_id}", response_model=DomainView, response_model_exclude_none=True)
async def get_domain(d: ev.DomainSaved = Depends(owned_domain), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return manage.domain_view(d, rt.settings)


@router.patch("/{domain_id}", response_model=DomainView, response_model_exclude_none=True)
async def update_domain(body: DomainUpdate, d: ev.DomainSaved = Depends(owned_domain),
                        svc: ev.ServiceSaved = Depends(owned_service), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Set (or, with null, remove) the domain's tracking host (its CNAME joins the records);
    ``receiving`` turns receiving mail on or off (an MX record joins the records);
    ``return_path`` moves the bounce subdomain (null: ``bounces``); ``dkim_rotation_days``
    schedules DKIM rotation (null: none)."""
    view = manage.domain_view(d, rt.settings)
    if "tracking_host" in body.model_fields_set:
        view = unless_refused(await manage.set_tracking_host(rt, d, body.tracking_host))
        d = unless_refused(manage.find_domain(rt, svc, d.domain_id))
    if body.receiving is not None:
        view = unless_refused(await manage.set_receiving(rt, d, body.receiving))
        d = unless_refused(manage.find_domain(rt, svc, d.domain_id))
    if "return_path" in body.model_fields_set:
        view = unless_refused(await manage.set_return_path(rt, d, body.return_path))
        d = unless_refused(manage.find_domain(rt, svc, d.domain_id))
    if "dkim_rotation_days" in body.model_fields_set:
        view = unless_refused(await manage.set_rotation_days(rt, d, body.dkim_rotation_days))
    return view


@router.post("/{domain_id}/verify", response_model=DomainView, response_model_exclude_none=True)
async def verify_domain(d: ev.DomainSaved = Depends(owned_domain), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.verify_domain(rt, d))


@router.post("/{domain_id}/rotate-dkim", response_model=DomainView, response_model_exclude_none=True)
async def rotate_dkim(d: ev.DomainSaved = Depends(owned_domain), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """A new RSA + Ed25519 key set, listed as pending (``dkim_set``) beside the current one;
    signing moves to it once a verification finds its records, and the old set stays
    listed as retiring for 7 days (docs/delivery.md, "DKIM rotation")."""
    return unless_refused(await manage.rotate_dkim(rt, d))


@router.delete("/{domain_id}", status_code=204)
async def delete_domain(d: ev.DomainSaved = Depends(owned_domain), rt: ApiContext = Depends(runtime)) -> None:
    unless_refused(await manage.delete_domain(rt, d))
