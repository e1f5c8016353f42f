"""Service API keys: the secret is shown once; only its SHA-256 is kept; a key of one service
never reads or sends for another (the HTTP doors of services/api/manage/keys.py)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.api.auth import owned_service, runtime
from services.api.errors import unless_refused
from services.api.manage import keys as manage
from services.api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList
from shared import events as ev
from services.api.context import ApiContext

router = APIRouter(prefix="/api/email/services/{service_id}/api-keys", tags=["api-keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(body: ApiKeyCreate, svc: ev.ServiceSaved = Depends(owned_service),
                     rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return await manage.create_key(rt, svc, body.name, body.permission)


@router.get("", response_model=ApiKeyList)
async def list_keys(svc: ev.ServiceSaved = Depends(owned_service), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return {"data": manage.list_keys(rt, svc)}


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, svc: ev.ServiceSaved = Depends(owned_service), rt: ApiContext = Depends(runtime)) -> None:
    unless_refused(await manage.revoke_key(rt, svc, key_id))
