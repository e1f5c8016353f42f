"""Sandbox recipients (the HTTP doors of services/api/manage/sandbox.py): add (a confirmation
link is mailed), list, remove, and the link's landing page."""
from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from services.api.auth import caught_up, owned_service, runtime
from services.api.errors import unless_refused
from services.api.manage import sandbox as manage
from services.api.refusal import Refusal
from services.api.schemas import SandboxEmailCreate, SandboxEmailList, SandboxEmailView
from shared import events as ev
from services.api.context import ApiContext

router = APIRouter(tags=["sandbox-emails"])
VERIFY_PATH = manage.VERIFY_PATH


@router.post("/api/email/services/{service_id}/sandbox-emails", status_code=201, response_model=SandboxEmailView)
async def add_sandbox_email(body: SandboxEmailCreate, svc: ev.ServiceSaved = Depends(owned_service),
                            rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.add_recipient(rt, svc, body.email))


@router.get("/api/email/services/{service_id}/sandbox-emails", response_model=SandboxEmailList)
async def list_sandbox_emails(svc: ev.ServiceSaved = Depends(owned_service), rt: ApiContext = Depends(runtime)
                              ) -> dict[str, Any]:
    return {"data": manage.list_recipients(rt, svc)}


@router.delete("/api/email/services/{service_id}/sandbox-emails/{recipient_id}", status_code=204)
async def delete_sandbox_email(recipient_id: str, svc: ev.ServiceSaved = Depends(owned_service),
                               rt: ApiContext = Depends(runtime)) -> None:
    unless_refused(await manage.remove_recipient(rt, svc, recipient_id))


@router.get(VERIFY_PATH, response_class=HTMLResponse, include_in_schema=False)
async def verify_sandbox_email(token: str = Query(..., min_length=10, max_length=200),
                               rt: ApiContext = Depends(runtime)) -> HTMLResponse:
    """Follow the link from the verification email. Single-use; expires after 24 h."""
    await caught_up(rt)  # the address may have been added on another process a moment ago
    rec = await manage.verify_token(rt, token)
    if isinstance(rec, Refusal):  # a person reads this page: the refusal in words, not JSON
        return HTMLResponse(f"<h1>{escape(rec.message)}</h1>", status_code=rec.status)
    return HTMLResponse(f"<h1>{escape(rec.email)} is verified.</h1><p>It can now receive test email.</p>")
