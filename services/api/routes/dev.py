"""The dev inbox (embedded mode only): what the relay captured instead of sending.

A workspace's admin token sees only the mail of that workspace's messages
(services/api/inbox_access.py); another workspace's mail is a 404."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

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


async def _own(rt: ApiContext, ws: WorkspaceSaved, mail: dict[str, Any] | None, mail_id: str) -> dict[str, Any]:
    """``mail`` if it is one of the caller's workspace's messages, else 404."""
    if mail is None or mail["postline_id"] not in await own_email_ids(rt, ws.workspace_id, [mail["postline_id"]]):
        raise HTTPException(404, f"mail {mail_id} not found")
    return mail


@router.get("", response_model=None)
async def list_inbox(limit: int = Query(50, ge=1, le=500), to: str | None = Query(None, max_length=320),
                     email_id: str | None = Query(None, max_length=64),
                     wait: float = Query(0, ge=0, le=30, description="Seconds to wait for a first match."),
                     ws: WorkspaceSaved = Depends(workspace),
                     rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Captured mail of this workspace, newest first; ``to`` / ``email_id`` filter, ``wait`` long-polls."""
    async def own(mails: list[dict]) -> list[dict]:
        mine = await own_email_ids(rt, ws.workspace_id, [m["postline_id"] for m in mails])
        return [m for m in mails if m["postline_id"] in mine]

    return {"data": await _inbox(rt).wait_list(wait, keep=own, limit=limit, to=to, email_id=email_id)}


# before "/{mail_id}", which would otherwise take "<id>.eml" as an id
@router.get("/{mail_id}.eml")
async def raw_mail(mail_id: str, ws: WorkspaceSaved = Depends(workspace),
                   rt: ApiContext = Depends(runtime)) -> Response:
    inbox = _inbox(rt)
    await _own(rt, ws, inbox.summary(mail_id), mail_id)
    return Response(inbox.raw(mail_id), media_type="message/rfc822")


@router.get("/{mail_id}", response_model=None)
async def mail(mail_id: str, ws: WorkspaceSaved = Depends(workspace),
               rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """One captured message decoded: headers, ``text``, ``html`` and the ``links`` it contains."""
    return await _own(rt, ws, _inbox(rt).message(mail_id), mail_id)
