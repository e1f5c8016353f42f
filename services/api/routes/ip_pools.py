"""Source IP pools (the HTTP doors of services/api/manage/ip_pools.py), admin only."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from services.api.auth import runtime, workspace
from services.api.context import ApiContext
from services.api.errors import http_error, unless_refused
from services.api.manage import ip_pools as manage
from services.api.manage import shaping
from services.api.schemas import IpPoolCreate, IpPoolUpdate
from shared import events as ev

router = APIRouter(tags=["ip-pools"])


def _pool(pool_id: str, request: Request, rt: ApiContext) -> ev.IpPoolSaved:
    _admin(request)
    return unless_refused(manage.find(rt, pool_id))


def _admin(request: Request) -> None:
    if refused := shaping.refusal(request.state.actor):
        raise http_error(refused)


@router.post("/api/email/ip-pools", status_code=201)
async def create_ip_pool(body: IpPoolCreate, request: Request, ws: ev.WorkspaceSaved = Depends(workspace),
                         rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    _admin(request)
    return unless_refused(await manage.create_pool(rt, ws, body))


@router.get("/api/email/ip-pools")
async def list_ip_pools(request: Request, ws: ev.WorkspaceSaved = Depends(workspace),
                        rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    _admin(request)
    return {"object": "list", "data": manage.list_pools(rt)}


@router.get("/api/email/ip-pools/{pool_id}")
async def get_ip_pool(pool_id: str, request: Request, ws: ev.WorkspaceSaved = Depends(workspace),
                      rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return manage.pool_view(rt, _pool(pool_id, request, rt))


@router.patch("/api/email/ip-pools/{pool_id}")
async def update_ip_pool(pool_id: str, body: IpPoolUpdate, request: Request, ws: ev.WorkspaceSaved = Depends(workspace),
                         rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.update_pool(rt, _pool(pool_id, request, rt), body))


@router.delete("/api/email/ip-pools/{pool_id}", status_code=204)
async def delete_ip_pool(pool_id: str, request: Request, ws: ev.WorkspaceSaved = Depends(workspace),
                         rt: ApiContext = Depends(runtime)) -> None:
    unless_refused(await manage.delete_pool(rt, _pool(pool_id, request, rt)))
