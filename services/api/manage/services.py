"""Services: logical senders of a workspace — create, view, change (mode, status, tracking,
rate-limit overrides), delete."""
from __future__ import annotations

from typing import Any

from services.api import access
from services.api.access import Actor
from services.api.manage import changed, deleted
from services.api.refusal import Refusal
from services.api.schemas import RateLimitsUpdate, ServiceUpdate
from shared import events as ev
from services.api.context import ApiContext


def service_view(rt: ApiContext, svc: ev.ServiceSaved) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": svc.service_id, "name": svc.name, "mode": svc.mode, "status": svc.status,
        "track_opens": svc.track_opens, "track_clicks": svc.track_clicks, "list_unsubscribe": svc.list_unsubscribe,
        "receiving_retention_days": svc.receiving_retention_days, "require_tls": svc.require_tls,
        "ip_pool_id": svc.ip_pool_id,
        "created_at": svc.created_at.isoformat(),
        "alerts": {"bounce_rate": svc.alert_bounce_rate, "complaint_rate": svc.alert_complaint_rate,
                   "min_volume": svc.alert_min_volume}}
    if rt.limits is not None:
        view["rate_limits"] = rt.limits.view(svc.service_id)
    return view


def rate_override_changes(limits: RateLimitsUpdate | None) -> dict[str, int | None]:
    """A field given sets that override, a field given as null clears it, a field left out
    keeps it; ``rate_limits: null`` clears both."""
    if limits is None:
        return {"rate_per_minute": None, "rate_per_day": None}
    return {f"rate_{name}": getattr(limits, name) for name in ("per_minute", "per_day") if name in limits.model_fields_set}


async def create_service(rt: ApiContext, ws: ev.WorkspaceSaved, name: str) -> dict[str, Any]:
    svc = ev.ServiceSaved(workspace_id=ws.workspace_id, service_id=ev.new_id(), name=name, created_at=ev.utcnow())
    await rt.control.save(svc)
    return service_view(rt, svc)


async def update_service(rt: ApiContext, svc: ev.ServiceSaved, body: ServiceUpdate,
                         actor: Actor | None = None) -> dict[str, Any] | Refusal:
    """Only the fields given are recorded as changed: a field this process has an older view
    of is never written back (409 if another request set one of these since ``svc`` was read).
    Production needs a verified domain (400). A service's IP pool is the operator's to assign
    (the ``installation`` permission, as the pools themselves: 403 for anyone else, so a
    tenant cannot leave the pool it was put in or take another)."""
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"rate_limits", "alerts"})
    if body.alerts is not None:
        changes.update({f"alert_{k}": v for k, v in body.alerts.model_dump(exclude_none=True).items()})
    if "rate_limits" in body.model_fields_set:
        changes.update(rate_override_changes(body.rate_limits))
    if "ip_pool_id" in body.model_fields_set:
        if refused := (access.refusal(actor, "installation") if actor else Refusal(403, "ip_pool_id: not assignable here")):
            return refused
        changes["ip_pool_id"] = body.ip_pool_id or None
        if changes["ip_pool_id"] is not None and changes["ip_pool_id"] not in rt.control.state.ip_pools:
            return Refusal(400, "ip_pool_id: no such IP pool")
    if changes.get("mode") == "production" and not any(d.verified for d in rt.control.state.domains_of(svc.service_id)):
        return Refusal(400, "mode: production needs at least one verified domain; verify a domain first")
    if not changes:
        return service_view(rt, svc)
    updated = await changed(rt, svc, **changes)
    return updated if isinstance(updated, Refusal) else service_view(rt, updated)


async def delete_service(rt: ApiContext, svc: ev.ServiceSaved) -> Refusal | None:
    return await deleted(rt, svc)
