"""Services: the list, create, and a service's page (mode/status, limits, usage, chart)."""
from __future__ import annotations

import logging
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.context import ApiContext
from services.api.dashboard import chart
from services.api.dashboard.web import BAD_INPUT, Caller, PageError, caller, form, page, problem, redirect, service_of
from services.api.manage import services as api
from services.api.refusal import Refusal
from services.api.schemas import ServiceCreate, ServiceUpdate
from shared.store import insights, queries

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)
BUCKET = {"24h": "hour", "7d": "day", "30d": "day"}


def _list(request: Request, c: Caller, status: int = 200, error: str | None = None) -> HTMLResponse:
    items = [api.service_view(c.rt, s) for s in c.rt.control.state.services_of(c.workspace.workspace_id)]
    return page(request, "services.html", status=status, c=c, services=items, error=error)


@router.get("/services")
async def services_list(request: Request, c: Caller = Depends(caller)) -> Response:
    return _list(request, c)


@router.post("/services")
async def services_create(request: Request, c: Caller = Depends(caller)) -> Response:
    data = await form(request, c)
    try:
        body = ServiceCreate(name=data.get("name", "").strip())
    except BAD_INPUT as exc:
        return _list(request, c, 400, problem(exc))
    created = await api.create_service(c.rt, c.workspace, body.name)
    return redirect(f"/services/{created['id']}")


async def _stats(rt: ApiContext, service_id: str, period: str) -> dict | None:
    if rt.store is None:
        return None
    try:
        return await queries.stats(rt.store, service_id, period, BUCKET[period], None)
    except Exception:  # the analytics store is a read model: the page still shows the rest
        log.exception("stats unavailable for the dashboard")
        return None


async def _alerts(rt: ApiContext, service_id: str) -> list[dict]:
    """The service's raised alerts, for the banner (none when the store is missing or down)."""
    if rt.store is None:
        return []
    try:
        return await insights.active_alerts(rt.store, service_id)
    except Exception:  # the analytics store is a read model: the page still shows the rest
        log.exception("alerts unavailable for the dashboard")
        return []


async def _detail(request: Request, c: Caller, service_id: str, period: str, status: int = 200,
                  error: str | None = None) -> HTMLResponse:
    svc = service_of(c, service_id)
    state = c.rt.control.state
    limiter = c.rt.limits
    if limiter is not None:
        await limiter.refresh(svc.service_id)  # seeds today's count and the tier from the store
    stats = await _stats(c.rt, svc.service_id, period)
    return page(request, "service.html", status=status, c=c, svc=api.service_view(c.rt, svc), period=period,
                stats=stats, chart=chart.svg(stats) if stats else None, alerts=await _alerts(c.rt, svc.service_id),
                series=chart.series(stats) if stats else [], color=chart.color, error=error,
                has_verified_domain=any(d.verified for d in state.domains_of(svc.service_id)),
                counts={"domains": len(state.domains_of(svc.service_id)), "api_keys": len(state.keys_of(svc.service_id)),
                        "sandbox": len(state.sandbox_of(svc.service_id)),
                        "webhooks": len(state.webhooks_of(svc.service_id)),
                        "suppressions": len(state.suppressions_of(svc.service_id))})


@router.get("/services/{service_id}")
async def service_detail(request: Request, service_id: str, period: str = "7d",
                         c: Caller = Depends(caller)) -> Response:
    if period not in BUCKET:
        raise PageError(400, "period: one of 24h, 7d, 30d")
    return await _detail(request, c, service_id, period)


@router.post("/services/{service_id}/settings")
async def service_settings(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    """Switch mode, status or tracking with the API's own rules (production needs a verified domain)."""
    data = await form(request, c)
    svc = service_of(c, service_id)
    changes: dict = {k: data[k] for k in ("mode", "status") if data.get(k)}
    if data.get("tracking"):  # the tracking form: an unchecked box is simply absent
        changes.update(track_opens="track_opens" in data, track_clicks="track_clicks" in data)
    try:
        body = ServiceUpdate(**changes)
    except BAD_INPUT as exc:
        return await _detail(request, c, service_id, "7d", 400, problem(exc))
    updated = await api.update_service(c.rt, svc, body)
    if isinstance(updated, Refusal):
        return await _detail(request, c, service_id, "7d", 400, problem(updated))
    return redirect(f"/services/{service_id}")
