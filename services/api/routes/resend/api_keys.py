"""Resend's ``/api-keys`` for a full-access key of a service: create (``{id, token}``, the
secret shown once), list, rename, revoke — the service's own keys (services/api/manage/keys.py)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from services.api.auth import ServiceCaller, full_access_key, runtime
from services.api.context import ApiContext
from services.api.errors import unless_refused
from services.api.manage import keys as manage
from services.api.routes.resend.paging import Paging, newest_first_page, paging
from services.api.schemas import ApiKeyCreate

router = APIRouter(prefix="/api-keys", tags=["resend: api-keys"])


class KeyRename(BaseModel):
    model_config = ConfigDict(extra="ignore")  # Resend's SDKs repeat the id in the body
    name: str = Field(min_length=1, max_length=100)


def listed(k: dict[str, Any]) -> dict[str, Any]:
    """Resend's list item, plus Postline's ``permission``, ``domain_id`` and ``prefix``."""
    return {**k, "last_used_at": None}


@router.post("", status_code=201)
async def create_key(body: ApiKeyCreate, caller: ServiceCaller = Depends(full_access_key),
                     rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """`{name, permission?, domain_id?}` → `{id, token}` (the token is shown only here)."""
    created = unless_refused(await manage.create_key(rt, caller.service, body))
    return {"id": created["id"], "token": created["key"]}


@router.get("")
async def list_keys(p: Paging = Depends(paging), caller: ServiceCaller = Depends(full_access_key),
                    rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return newest_first_page(manage.list_keys(rt, caller.service), lambda k: k["created_at"], lambda k: k["id"],
                             listed, p)


@router.patch("/{key_id}")
async def rename_key(key_id: str, body: KeyRename, caller: ServiceCaller = Depends(full_access_key),
                     rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    unless_refused(await manage.rename_key(rt, caller.service, key_id, body.name))
    return {"object": "api_key", "id": key_id}


@router.delete("/{key_id}")
async def revoke_key(key_id: str, caller: ServiceCaller = Depends(full_access_key),
                     rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Revoked at once (the key calling may revoke itself)."""
    unless_refused(await manage.revoke_key(rt, caller.service, key_id))
    return {"object": "api_key", "id": key_id, "deleted": True}
