"""Service API keys: create (the secret is returned once; only its SHA-256 is kept), list, revoke."""
from __future__ import annotations

from typing import Any

from services.api.manage import deleted
from services.api.refusal import Refusal
from shared import events as ev
from shared.crypto import hash_secret, new_api_key
from services.api.context import ApiContext


def key_view(k: ev.ApiKeySaved) -> dict[str, Any]:
    return {"id": k.key_id, "name": k.name, "prefix": k.prefix, "created_at": k.created_at.isoformat()}


def list_keys(rt: ApiContext, svc: ev.ServiceSaved) -> list[dict[str, Any]]:
    return [key_view(k) for k in rt.control.state.keys_of(svc.service_id)]


async def create_key(rt: ApiContext, svc: ev.ServiceSaved, name: str, permission: str = "sending_access") -> dict[str, Any]:
    """The key's view with its secret (``key``), shown in this one answer."""
    secret = new_api_key()
    rec = ev.ApiKeySaved(workspace_id=svc.workspace_id, service_id=svc.service_id, key_id=ev.new_id(), name=name,
                         key_hash=hash_secret(secret), prefix=secret[:11], created_at=ev.utcnow(),
                         permission=permission)
    await rt.control.save(rec)
    return {**key_view(rec), "key": secret}


async def revoke_key(rt: ApiContext, svc: ev.ServiceSaved, key_id: str) -> Refusal | None:
    """404 when ``key_id`` is not one of ``svc``'s keys."""
    rec = rt.control.state.api_keys.get(key_id)
    if rec is None or rec.service_id != svc.service_id:
        return Refusal(404, f"api key {key_id} not found")
    return await deleted(rt, rec)
