"""Services: logical senders of a workspace (one per app or environment), each with its own
mode, status, rate limits, domains, keys and webhooks (the HTTP doors of
services/api/manage/services.py)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from services.api.auth import owned_service, runtime, workspace
from services.api.errors import unless_refused
from services.api.manage import services as manage
from services.api.schemas import ServiceCreate, ServiceList, ServiceUpdate, ServiceView
from shared import events as ev
from services.api.context import ApiContext

router = APIRouter(prefix="/api/email/services", tags=["services"])


@router.post("", status_code=201, response_model=ServiceView)
async def create_service(body: ServiceCreate, ws: ev.WorkspaceSaved = Depends(workspace),
                         rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return await manage.create_service(rt, ws, body.name)


@router.get("", response_model=ServiceList)
async def list_services(ws: ev.WorkspaceSaved = Depends(workspace), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return {"data": [manage.service_view(rt, s) for s in rt.control.state.services_of(ws.workspace_id)]}


@router.get("/{service_id}", response_model=ServiceView)
async def get_service(svc: ev.ServiceSaved = Depends(owned_service), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return manage.service_view(rt, svc)


@router.patch("/{service_id}", response_model=ServiceView)
async def update_service(body: ServiceUpdate, request: Request, svc: ev.ServiceSaved = Depends(owned_service),
                         rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.update_service(rt, svc, body, request.state.actor))


@router.delete("/{service_id}", status_code=204)
async def delete_service(svc: ev.ServiceSaved = Depends(owned_service), rt: ApiContext = Depends(runtime)) -> None:
    unless_refused(await manage.delete_service(rt, svc))
