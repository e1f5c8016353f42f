"""A service's suppression list: list (newest first), search, add, remove."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.dashboard.web import BAD_INPUT, Caller, caller, form, page, problem, redirect, service_of
from services.api.manage import suppressions as api
from services.api.refusal import Refusal
from shared import events as ev

router = APIRouter(include_in_schema=False)
PAGE = 200


def _list(request: Request, c: Caller, svc: ev.ServiceSaved, q: str = "", status: int = 200,
          error: str | None = None) -> HTMLResponse:
    items = api.list_all(c.rt, svc)
    needle = q.strip().lower()
    if needle:
        items = [s for s in items if needle in s["email"]]
    return page(request, "suppressions.html", status=status, c=c, svc=svc, items=items[:PAGE], total=len(items),
                q=q, error=error, tab="suppressions")


@router.get("/services/{service_id}/suppressions")
async def suppressions_page(request: Request, service_id: str, q: str = "", c: Caller = Depends(caller)) -> Response:
    return _list(request, c, service_of(c, service_id), q[:320])


@router.post("/services/{service_id}/suppressions")
async def suppression_add(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    data = await form(request, c)
    svc = service_of(c, service_id)
    try:
        body = api.SuppressionCreate(email=data.get("email", ""), reason="manual")
    except BAD_INPUT as exc:
        return _list(request, c, svc, status=400, error=problem(exc))
    await api.add(c.rt, svc, body)
    return redirect(f"/services/{service_id}/suppressions")


@router.post("/services/{service_id}/suppressions/remove")
async def suppression_remove(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    data = await form(request, c)
    svc = service_of(c, service_id)
    refused = await api.remove(c.rt, svc, data.get("email", ""))
    if isinstance(refused, Refusal):
        return _list(request, c, svc, status=refused.status, error=problem(refused))
    return redirect(f"/services/{service_id}/suppressions")
