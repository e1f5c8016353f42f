"""Shaping per mailbox provider (the HTTP doors of services/api/manage/shaping.py):
``GET /api/email/shaping`` (limits and live state), ``PUT`` (the operator's limits)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from services.api.auth import runtime, workspace
from services.api.context import ApiContext
from services.api.errors import http_error
from services.api.manage import shaping as manage
from services.api.schemas import ShapingUpdate
from shared import events as ev

router = APIRouter(tags=["shaping"])


def _admin(request: Request) -> None:
    if refused := manage.refusal(request.state.actor):
        raise http_error(refused)


@router.get("/api/email/shaping")
async def get_shaping(request: Request, ws: ev.WorkspaceSaved = Depends(workspace),
                      rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    _admin(request)
    return manage.view(rt)


@router.put("/api/email/shaping")
async def put_shaping(body: ShapingUpdate, request: Request, ws: ev.WorkspaceSaved = Depends(workspace),
                      rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    _admin(request)
    return await manage.save(rt, ws, body.providers)
