"""Services: logical senders of a workspace (one per app or environment), each with its own
mode, status, rate limits, domains, keys and webhooks."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from services.api.auth import owned_service, runtime, workspace
from services.api.schemas import ServiceCreate, ServiceList, ServiceUpdate, ServiceView
from shared import events as ev

router = APIRouter(prefix="/api/email/services", tags=["services"])


def service_view(rt, svc: ev.ServiceSaved) -> dict:
    view = {"id": svc.service_id, "name": svc.name, "mode": svc.mode, "status": svc.status,
            "track_opens": svc.track_opens, "track_clicks": svc.track_clicks, "list_unsubscribe": svc.list_unsubscribe,
            "created_at": svc.created_at.isoformat()}
    limits = rt.limits
    if limits is not None:
        view["rate_limits"] = limits.view(svc.service_id)
    return view


def rate_override_changes(limits) -> dict:
    """A field given sets that override, a field given as null clears it, a field left out
    keeps it; ``rate_limits: null`` clears both."""
    if limits is None:
        return {"rate_per_minute": None, "rate_per_day": None}
    return {f"rate_{name}": getattr(limits, name) for name in ("per_minute", "per_day") if name in limits.model_fields_set}


@router.post("", status_code=201, response_model=ServiceView)
async def create_service(body: ServiceCreate, ws=Depends(workspace), rt=Depends(runtime)):
    svc = ev.ServiceSaved(workspace_id=ws.workspace_id, service_id=ev.new_id(), name=body.name, created_at=ev.utcnow())
    await rt.control.save(svc)
    return service_view(rt, svc)


@router.get("", response_model=ServiceList)
async def list_services(ws=Depends(workspace), rt=Depends(runtime)):
    return {"data": [service_view(rt, s) for s in rt.control.state.services_of(ws.workspace_id)]}


@router.get("/{service_id}", response_model=ServiceView)
async def get_service(svc=Depends(owned_service), rt=Depends(runtime)):
    return service_view(rt, svc)


@router.patch("/{service_id}", response_model=ServiceView)
async def update_service(body: ServiceUpdate, svc=Depends(owned_service), rt=Depends(runtime)):
    changes = body.model_dump(exclude_none=True, exclude={"rate_limits"})
    if "rate_limits" in body.model_fields_set:
        changes.update(rate_override_changes(body.rate_limits))
    if changes.get("mode") == "production" and not any(d.verified for d in rt.control.state.domains_of(svc.service_id)):
        raise HTTPException(400, "mode: production needs at least one verified domain; verify a domain first")
    if not changes:
        return service_view(rt, svc)
    # only the fields given are recorded as changed: a field this process has an older view of
    # is never written back (409 if another request set one of these since ``svc`` was read)
    return service_view(rt, await rt.control.change(svc, **changes))


@router.delete("/{service_id}", status_code=204)
async def delete_service(svc=Depends(owned_service), rt=Depends(runtime)):
    await rt.control.change(svc, deleted=True)
