"""Service API keys: the secret is shown once; only its SHA-256 is kept; a key
of one service never reads or sends for another."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from services.api.auth import owned_service, runtime
from services.api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList
from shared import events as ev
from shared.crypto import hash_secret, new_api_key

router = APIRouter(prefix="/api/email/services/{service_id}/api-keys", tags=["api-keys"])


def key_view(k: ev.ApiKeySaved) -> dict:
    return {"id": k.key_id, "name": k.name, "prefix": k.prefix, "created_at": k.created_at.isoformat()}


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(body: ApiKeyCreate, svc=Depends(owned_service), rt=Depends(runtime)):
    secret = new_api_key()
    rec = ev.ApiKeySaved(workspace_id=svc.workspace_id, service_id=svc.service_id, key_id=ev.new_id(), name=body.name,
                         key_hash=hash_secret(secret), prefix=secret[:11], created_at=ev.utcnow())
    await rt.control.save(rec)
    return {**key_view(rec), "key": secret}


@router.get("", response_model=ApiKeyList)
async def list_keys(svc=Depends(owned_service), rt=Depends(runtime)):
    return {"data": [key_view(k) for k in rt.control.state.keys_of(svc.service_id)]}


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, svc=Depends(owned_service), rt=Depends(runtime)):
    rec = rt.control.state.api_keys.get(key_id)
    if rec is None or rec.service_id != svc.service_id:
        raise HTTPException(404, f"api key {key_id} not found")
    await rt.control.change(rec, deleted=True)
