"""Sending domains: DKIM keys generated on add, DNS records to publish, verification."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from services.api import domains as dom
from services.api.auth import owned_service, runtime
from services.api.schemas import DomainCreate, DomainList, DomainUpdate, DomainView
from shared import events as ev
from shared.dkim_keys import generate

router = APIRouter(prefix="/api/email/services/{service_id}/domains", tags=["domains"])


def domain_view(d: ev.DomainSaved, settings) -> dict:
    return {"id": d.domain_id, "domain": d.domain, "status": "verified" if d.verified else "pending",
            "verified": d.verified, "verified_at": d.verified_at.isoformat() if d.verified_at else None,
            "created_at": d.created_at.isoformat(), "records": dom.records(d, settings),
            "tracking_host": d.tracking_host, "last_check": d.last_check}


def _tracking_host(value: str | None, domain: str) -> str | None:
    try:
        return dom.normalise_tracking_host(value, domain) if value else None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def owned_domain(domain_id: str, svc=Depends(owned_service), rt=Depends(runtime)) -> ev.DomainSaved:
    d = rt.control.state.domains.get(domain_id)
    if d is None or d.service_id != svc.service_id:
        raise HTTPException(404, f"domain {domain_id} not found")
    return d


@router.post("", status_code=201, response_model=DomainView, response_model_exclude_none=True)
async def add_domain(body: DomainCreate, svc=Depends(owned_service), rt=Depends(runtime)):
    name = dom.normalise_domain(body.domain)
    if name is None:
        raise HTTPException(400, f"domain: {body.domain!r} is not a valid domain name")
    if any(d.domain == name for d in rt.control.state.domains_of(svc.service_id)):
        raise HTTPException(409, f"domain: {name} is already added to this service")
    host = _tracking_host(body.tracking_host, name)
    domain_id = ev.new_id()
    d = ev.DomainSaved(workspace_id=svc.workspace_id, service_id=svc.service_id, domain_id=domain_id, domain=name,
                       tracking_host=host, created_at=ev.utcnow(), **generate(rt.settings.master_key, domain_id))
    await rt.control.save(d)
    return domain_view(d, rt.settings)


@router.get("", response_model=DomainList, response_model_exclude_none=True)
async def list_domains(svc=Depends(owned_service), rt=Depends(runtime)):
    return {"data": [domain_view(d, rt.settings) for d in rt.control.state.domains_of(svc.service_id)]}


@router.get("/{domain_id}", response_model=DomainView, response_model_exclude_none=True)
async def get_domain(d=Depends(owned_domain), rt=Depends(runtime)):
    return domain_view(d, rt.settings)


@router.patch("/{domain_id}", response_model=DomainView, response_model_exclude_none=True)
async def update_domain(body: DomainUpdate, d=Depends(owned_domain), rt=Depends(runtime)):
    """Set (or, with null, remove) the domain's tracking host; its CNAME joins the records."""
    if "tracking_host" not in body.model_fields_set:
        return domain_view(d, rt.settings)
    updated = await rt.control.change(d, tracking_host=_tracking_host(body.tracking_host, d.domain))
    return domain_view(updated, rt.settings)


@router.post("/{domain_id}/verify", response_model=DomainView, response_model_exclude_none=True)
async def verify_domain(d=Depends(owned_domain), rt=Depends(runtime)):
    verified, checks = await dom.verify(d, rt.settings)
    now = ev.utcnow()
    updated = await rt.control.change(d, verified=verified, verified_at=(d.verified_at or now) if verified else None,
                                      last_check={"at": now.isoformat(), "records": checks})
    return {**domain_view(updated, rt.settings), "checks": checks}


@router.delete("/{domain_id}", status_code=204)
async def delete_domain(d=Depends(owned_domain), rt=Depends(runtime)):
    await rt.control.change(d, deleted=True)
