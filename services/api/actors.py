"""Who is acting, per request, for the audit log (shared/audit.py).

``AuditContext`` (ASGI middleware, inside ``RequestIds``) opens one ``audit.Context`` per
HTTP request with the client's address and the request id; the auth dependencies
(services/api/auth.py, the dashboard's ``caller``) name the actor once the credential is
known. A control change made while the request runs (``ControlPlane.save``/``change``)
then carries its audit entry."""
from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.access import Actor
from services.api.request_ids import request_id_of
from shared import audit, events as ev


class AuditContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        with audit.acting(audit.Context(source=str(client[0]) if client else None, request_id=request_id_of(scope))):
            await self.app(scope, receive, send)


def acting(actor: Actor, ws: ev.WorkspaceSaved) -> None:
    """Name ``actor`` (services/api/access.py) as the audit log's actor: a user by their id
    (through a dashboard session or a personal token), else the workspace's admin token."""
    if actor.user is not None:
        audit.set_actor("user", actor.user.user_id)
    else:
        admin_token(ws.token_hash)


def admin_token(token_hash: str) -> None:
    """The actor is a workspace admin token, named by its hash's first 12 hex digits (which
    token it was tells re-keyings apart; the hash prefix reveals nothing of it)."""
    audit.set_actor("admin_token", token_hash[:12])


def api_key(key_id: str) -> None:
    audit.set_actor("api_key", key_id)
