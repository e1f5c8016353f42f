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
async def list_inbox(limit: int = Query(50, ge=1, le=500), to: str | None = None, rt=Depends(runtime)):
    return {"data": _inbox(rt).list(limit=limit, to=to)}


@router.get("/{mail_id}.eml")
async def raw_mail(mail_id: str, rt=Depends(runtime)):
    raw = _inbox(rt).raw(mail_id)
    if raw is None:
        raise HTTPException(404, f"mail {mail_id} not found")
    return Response(raw, media_type="message/rfc822")
