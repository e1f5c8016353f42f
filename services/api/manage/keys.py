"""Service API keys: create (the secret is returned once; only its SHA-256 is kept), list,
rename, revoke.

A key has Resend's ``permission``: ``sending_access`` (the default: it only sends) or
``full_access`` (it also manages its own service through Resend's paths). A sending key may
be limited to one of the service's domains (``domain_id``): it then only sends From that
domain (``sending.check_key_domain``, every send door)."""
from __future__ import annotations

from typing import Any, Literal

from services.api.manage import changed, deleted
from services.api.refusal import Refusal
from services.api.schemas import ApiKeyCreate
from shared import events as ev
from shared.crypto import hash_secret, new_api_key
from services.api.context import ApiContext


def key_view(k: ev.ApiKeySaved) -> dict[str, Any]:
    return {"id": k.key_id, "name": k.name, "prefix": k.prefix, "created_at": k.created_at.isoformat(),
            "permission": k.permission, "domain_id": k.domain_id}


def list_keys(rt: ApiContext, svc: ev.ServiceSaved) -> list[dict[str, Any]]:
    return [key_view(k) for k in rt.control.state.keys_of(svc.service_id)]


def find_key(rt: ApiContext, svc: ev.ServiceSaved, key_id: str) -> ev.ApiKeySaved | Refusal:
    """``svc``'s key ``key_id``; 404 for another service's or none."""
    rec = rt.control.state.api_keys.get(key_id)
    if rec is None or rec.service_id != svc.service_id:
        return Refusal(404, f"api key {key_id} not found")
    return rec


def check_scope(rt: ApiContext, svc: ev.ServiceSaved, body: ApiKeyCreate) -> Refusal | None:
    """A ``domain_id`` must be one of ``svc``'s domains (404 otherwise, as for any other
    tenant's id) and only limits a sending key (400 with ``full_access``, as Resend ignores it
    there: a key that looks limited but is not would be worse)."""
    if body.domain_id is None:
        return None
    if body.permission == "full_access":
        return Refusal(400, "only a sending_access key can be limited to a domain", "domain_id")
    d = rt.control.state.domains.get(body.domain_id)
    if d is None or d.service_id != svc.service_id:
        return Refusal(404, f"domain {body.domain_id} not found", "domain_id")
    return None


async def create_key(rt: ApiContext, svc: ev.ServiceSaved, body: ApiKeyCreate) -> dict[str, Any] | Refusal:
    """The key's view with its secret (``key``), shown in this one answer."""
    if refused := check_scope(rt, svc, body):
        return refused
    secret = new_api_key()
    rec = ev.ApiKeySaved(workspace_id=svc.workspace_id, service_id=svc.service_id, key_id=ev.new_id(), name=body.name,
                         key_hash=hash_secret(secret), prefix=secret[:11], created_at=ev.utcnow(),
                         permission=body.permission, domain_id=body.domain_id)
    await rt.control.save(rec)
    return {**key_view(rec), "key": secret}


async def rename_key(rt: ApiContext, svc: ev.ServiceSaved, key_id: str, name: str) -> dict[str, Any] | Refusal:
    """Resend's ``PATCH /api-keys/{id}``: only the name changes."""
    rec = find_key(rt, svc, key_id)
    if isinstance(rec, Refusal):
        return rec
    updated = await changed(rt, rec, name=name)
    return updated if isinstance(updated, Refusal) else key_view(updated)


async def revoke_key(rt: ApiContext, svc: ev.ServiceSaved, key_id: str) -> Refusal | None:
    """404 when ``key_id`` is not one of ``svc``'s keys."""
    rec = find_key(rt, svc, key_id)
    return rec if isinstance(rec, Refusal) else await deleted(rt, rec)

