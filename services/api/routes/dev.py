"""The dev inbox (embedded mode only): what the relay captured instead of sending.

A workspace's credential sees only the mail of that workspace's messages
(services/api/inbox_access.py); another workspace's mail is a 404. Of that mail, a personal
token sees what its user's role may read: mail carrying a credential (an invitation, a
sandbox confirmation link) only with the permission that sends it (services/api/access.py,
``readable_mail``; the admin token, an owner, reads all); the rest is left out of lists and
is a 404, as another workspace's mail is."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from services.api.access import Actor, readable_mail
from services.api.auth import runtime, workspace
from services.api.context import ApiContext
from services.api.inbox_access import own_email_ids
from shared.devinbox import DevInbox
from shared.events import WorkspaceSaved

router = APIRouter(prefix="/dev/inbox", tags=["dev"])


def _inbox(rt: ApiContext) -> DevInbox:
    if rt.inbox is None:
        raise HTTPException(404, "the dev inbox is only on with POSTLINE_DELIVERY=inbox")
    return rt.inbox


def _actor(request: Request) -> Actor:
    actor: Actor = request.state.actor  # set by ``workspace``, a dependency of every route here
    return actor


async def _own(rt: ApiContext, actor: Actor, mail: dict[str, Any] | None, mail_id: str) -> dict[str, Any]:
    """``mail`` if it is one of the caller's workspace's messages and the caller may read it, else 404."""
    if mail is None or mail["postline_id"] not in await own_email_ids(rt, actor.workspace_id, [mail["postline_id"]]) \
            or not await readable_mail(actor, _inbox(rt), [mail]):
        raise HTTPException(404, f"mail {mail_id} not found")
    return mail


@router.get("", response_model=None)
async def list_inbox(request: Request, limit: int = Query(50, ge=1, le=500),
                     to: str | None = Query(None, max_length=320), email_id: str | None = Query(None, max_length=64),
                     wait: float = Query(0, ge=0, le=30, description="Seconds to wait for a first match."),
                     ws: WorkspaceSaved = Depends(workspace),
                     rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Captured mail of this workspace the caller may read, newest first; ``to`` / ``email_id``
    filter, ``wait`` long-polls."""
    actor = _actor(request)

    async def own(mails: list[dict]) -> list[dict]:
        mine = await own_email_ids(rt, ws.workspace_id, [m["postline_id"] for m in mails])
        return await readable_mail(actor, _inbox(rt), [m for m in mails if m["postline_id"] in mine])

    return {"data": await _inbox(rt).wait_list(wait, keep=own, limit=limit, to=to, email_id=email_id)}


# before "/{mail_id}", which would otherwise take "<id>.eml" as an id
@router.get("/{mail_id}.eml")
async def raw_mail(mail_id: str, request: Request, ws: WorkspaceSaved = Depends(workspace),
                   rt: ApiContext = Depends(runtime)) -> Response:
    inbox = _inbox(rt)
    await _own(rt, _actor(request), inbox.summary(mail_id), mail_id)
    return Response(inbox.raw(mail_id), media_type="message/rfc822")


@router.get("/{mail_id}", response_model=None)
async def mail(mail_id: str, request: Request, ws: WorkspaceSaved = Depends(workspace),
               rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """One captured message decoded: headers, ``text``, ``html`` and the ``links`` it contains."""
    return await _own(rt, _actor(request), _inbox(rt).message(mail_id), mail_id)
