"""Personal API tokens: a user's credential for the management API (``Authorization: Bearer
pl_usr_…`` on /api/email/…), acting with that user's role at the time of each request.
Created in the dashboard (the secret is shown once; only its SHA-256 is kept), listed,
revoked; removing the user ends them too."""
from __future__ import annotations

from typing import Any

from services.api.access import Actor
from services.api.context import ApiContext
from services.api.manage import deleted
from services.api.refusal import Refusal
from shared import events as ev
from shared.control.state import ControlState
from shared.crypto import hash_secret, random_base62

PREFIX = "pl_usr_"
MAX_PER_USER = 20


def token_view(t: ev.UserTokenSaved) -> dict[str, Any]:
    return {"id": t.token_id, "name": t.name, "prefix": t.prefix, "created_at": t.created_at}


def list_tokens(rt: ApiContext, actor: Actor) -> list[dict[str, Any]]:
    return [token_view(t) for t in rt.control.state.user_tokens_of(actor.user_id)] if actor.user_id else []


async def create_token(rt: ApiContext, actor: Actor, name: str) -> dict[str, Any] | Refusal:
    """A new token of ``actor``'s user, with its secret (``token``) in this one answer."""
    if actor.user is None:
        return Refusal(400, "the admin token is already an API credential; personal tokens are for users")
    if len(rt.control.state.user_tokens_of(actor.user.user_id)) >= MAX_PER_USER:
        return Refusal(400, f"at most {MAX_PER_USER} tokens per user: revoke one first", field="name")
    secret = PREFIX + random_base62(40)
    rec = ev.UserTokenSaved(workspace_id=actor.workspace_id, token_id=ev.new_id(), user_id=actor.user.user_id,
                            name=name, token_hash=hash_secret(secret), prefix=secret[:12], created_at=ev.utcnow())
    await rt.control.save(rec)
    return {**token_view(rec), "token": secret}


async def revoke_token(rt: ApiContext, actor: Actor, token_id: str) -> Refusal | None:
    """404 when ``token_id`` is not one of ``actor``'s own tokens."""
    rec = rt.control.state.user_tokens.get(token_id)
    if rec is None or rec.user_id != actor.user_id or rec.workspace_id != actor.workspace_id:
        return Refusal(404, f"token {token_id} not found")
    return await deleted(rt, rec)


def token_actor(state: ControlState, secret: str) -> Actor | None:
    """Who a presented personal token acts for (the user's current role); None when unknown,
    revoked, or its user removed."""
    rec = state.user_token_by_hash(hash_secret(secret)) if secret.startswith(PREFIX) else None
    user = state.user(rec.workspace_id, rec.user_id) if rec else None
    if rec is None or user is None or user.status != "active":
        return None
    return Actor(rec.workspace_id, user.role, user=user, token_id=rec.token_id)
