"""Sandbox recipients: verified by following a single-use, expiring link sent through the
pipeline itself (from the sandbox sender, so it reaches the address in any mode)."""
from __future__ import annotations

import secrets
from datetime import timedelta
from html import escape

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse

from services.api.auth import caught_up, owned_service, runtime
from services.api.schemas import SandboxEmailCreate, SandboxEmailList, SandboxEmailView
from services.api.sending import remember
from shared import events as ev
from shared.crypto import hash_secret

router = APIRouter(tags=["sandbox-emails"])
TOKEN_TTL = timedelta(hours=24)
VERIFY_PATH = "/api/email/sandbox-emails/verify"


def recipient_view(r: ev.SandboxRecipientSaved) -> dict:
    return {"id": r.recipient_id, "email": r.email, "status": "verified" if r.verified else "pending",
            "verified": r.verified, "created_at": r.created_at.isoformat(),
            "verified_at": r.verified_at.isoformat() if r.verified_at else None}


def verification_request(rt, r: ev.SandboxRecipientSaved, svc: ev.ServiceSaved, link: str) -> ev.SendRequested:
    text = (f"Someone asked to receive test email from the Postline service \"{svc.name}\" at this address.\n\n"
            f"Confirm: {link}\n\nThe link works once and expires in 24 hours. If this wasn't you, ignore it.\n")
    html = (f"<p>Someone asked to receive test email from the Postline service <b>{escape(svc.name)}</b> at this "
            f"address.</p><p><a href=\"{escape(link)}\">Confirm this address</a></p>"
            "<p>The link works once and expires in 24 hours. If this wasn't you, ignore it.</p>")
    return ev.SendRequested(workspace_id=svc.workspace_id, service_id=svc.service_id, email_id=ev.new_id(),
                            mode="sandbox", to=[r.email], subject="Confirm your address for test email",
                            html=html, text=text, recipients=[r.email], tags=["postline-sandbox-verification"],
                            **{"from": f"Postline <{rt.settings.sandbox_from}>"})


@router.post("/api/email/services/{service_id}/sandbox-emails", status_code=201, response_model=SandboxEmailView)
async def add_sandbox_email(body: SandboxEmailCreate, svc=Depends(owned_service), rt=Depends(runtime)):
    existing = [r for r in rt.control.state.sandbox_of(svc.service_id) if r.email == body.email]
    if existing and existing[0].verified:
        return recipient_view(existing[0])
    token = secrets.token_urlsafe(32)
    now = ev.utcnow()
    if existing:  # a new link for a pending address (never a whole state: it may be verified meanwhile)
        rec = await rt.control.change(existing[0], token_hash=hash_secret(token), token_expires_at=now + TOKEN_TTL)
    else:
        rec = await rt.control.save(ev.SandboxRecipientSaved(
            workspace_id=svc.workspace_id, service_id=svc.service_id, recipient_id=ev.new_id(), email=body.email,
            token_hash=hash_secret(token), token_expires_at=now + TOKEN_TTL, created_at=now))
    link = f"{rt.settings.base_url}{VERIFY_PATH}?token={token}"
    req = verification_request(rt, rec, svc, link)
    await rt.log.append(ev.Topic.REQUESTS, req.email_id, ev.encode(req))
    remember(rt, req, {})  # a message of this workspace, known at once (the dev inbox checks ownership)
    return {**recipient_view(rec), "verification_email_id": req.email_id}


@router.get("/api/email/services/{service_id}/sandbox-emails", response_model=SandboxEmailList)
async def list_sandbox_emails(svc=Depends(owned_service), rt=Depends(runtime)):
    return {"data": [recipient_view(r) for r in rt.control.state.sandbox_of(svc.service_id)]}


@router.delete("/api/email/services/{service_id}/sandbox-emails/{recipient_id}", status_code=204)
async def delete_sandbox_email(recipient_id: str, svc=Depends(owned_service), rt=Depends(runtime)):
    rec = rt.control.state.sandbox.get(recipient_id)
    if rec is None or rec.service_id != svc.service_id:
        raise HTTPException(404, f"sandbox email {recipient_id} not found")
    await rt.control.change(rec, deleted=True)


@router.get(VERIFY_PATH, response_class=HTMLResponse, include_in_schema=False)
async def verify_sandbox_email(token: str = Query(..., min_length=10, max_length=200), rt=Depends(runtime)):
    """Follow the link from the verification email. Single-use; expires after 24 h."""
    await caught_up(rt)  # the address may have been added on another process a moment ago
    h = hash_secret(token)
    rec = next((r for r in rt.control.state.sandbox.values() if r.token_hash == h), None)
    now = ev.utcnow()
    if rec is None or rec.token_expires_at is None or rec.token_expires_at < now:
        return HTMLResponse("<h1>This link is invalid or has expired.</h1>", status_code=400)
    await rt.control.change(rec, verified=True, verified_at=now, token_hash=None, token_expires_at=None)
    return HTMLResponse(f"<h1>{escape(rec.email)} is verified.</h1><p>It can now receive test email.</p>")
