"""The suppression list of a service (docs/delivery.md): recipients never sent to again (the
HTTP doors of services/api/manage/suppressions.py). State is event-sourced on the control topic."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from services.api.auth import owned_service, runtime
from services.api.errors import unless_refused
from services.api.manage import suppressions as manage
from services.api.manage.suppressions import SuppressionCreate
from services.api.schemas import SuppressionList, SuppressionView
from shared import events as ev
from services.api.context import ApiContext

router = APIRouter(prefix="/api/email/services/{service_id}/suppressions", tags=["suppressions"])
__all__ = ["SuppressionCreate", "router"]


@router.get("", response_model=SuppressionList)
async def list_suppressions(limit: int = Query(50, ge=1, le=500), cursor: str | None = Query(None, max_length=320),
                            svc: ev.ServiceSaved = Depends(owned_service), rt: ApiContext = Depends(runtime)
                            ) -> dict[str, Any]:
    """Newest first; ``next_cursor`` pages on (an email address is the cursor)."""
    items = manage.list_all(rt, svc)
    if cursor:
        idx = next((i for i, s in enumerate(items) if s["email"] == cursor.lower()), None)
        items = items[idx + 1:] if idx is not None else []
    page = items[:limit]
    return {"data": page, "next_cursor": page[-1]["email"] if len(items) > limit else None}


@router.post("", status_code=201, response_model=SuppressionView)
async def add_suppression(body: SuppressionCreate, svc: ev.ServiceSaved = Depends(owned_service),
                          rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return await manage.add(rt, svc, body)


@router.get("/{email}", response_model=SuppressionView)
async def get_suppression(email: str, svc: ev.ServiceSaved = Depends(owned_service),
                          rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return manage.view(unless_refused(manage.find(rt, svc, email)))


@router.delete("/{email}", status_code=204)
async def remove_suppression(email: str, svc: ev.ServiceSaved = Depends(owned_service),
                             rt: ApiContext = Depends(runtime)) -> None:
    unless_refused(await manage.remove(rt, svc, email))
