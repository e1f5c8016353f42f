"""The dev inbox (embedded mode only): what the relay captured instead of sending."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from services.api.auth import runtime, workspace

router = APIRouter(prefix="/dev/inbox", tags=["dev"], dependencies=[Depends(workspace)])


def _inbox(rt):
    if rt.inbox is None:
        raise HTTPException(404, "the dev inbox is only on with POSTLINE_DELIVERY=inbox")
    return rt.inbox


@router.get("")
async def list_inbox(limit: int = Query(50, ge=1, le=500), to: str | None = Query(None, max_length=320),
                     email_id: str | None = Query(None, max_length=64),
                     wait: float = Query(0, ge=0, le=30, description="Seconds to wait for a first match."),
                     rt=Depends(runtime)):
    """Captured mail, newest first; ``to`` / ``email_id`` filter, ``wait`` long-polls."""
    return {"data": await _inbox(rt).wait_list(wait, limit=limit, to=to, email_id=email_id)}


# before "/{mail_id}", which would otherwise take "<id>.eml" as an id
@router.get("/{mail_id}.eml")
async def raw_mail(mail_id: str, rt=Depends(runtime)):
    raw = _inbox(rt).raw(mail_id)
    if raw is None:
        raise HTTPException(404, f"mail {mail_id} not found")
    return Response(raw, media_type="message/rfc822")


@router.get("/{mail_id}")
async def mail(mail_id: str, rt=Depends(runtime)):
    """One captured message decoded: headers, ``text``, ``html`` and the ``links`` it contains."""
    found = _inbox(rt).message(mail_id)
    if found is None:
        raise HTTPException(404, f"mail {mail_id} not found")
    return found
