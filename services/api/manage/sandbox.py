"""Sandbox recipients: add (a single-use, expiring confirmation link is mailed through the
pipeline itself, from the sandbox sender, so it reaches the address in any mode), list,
verify by the link's token, remove."""
from __future__ import annotations

import secrets
from datetime import timedelta
from html import escape
from typing import Any

from services.api.manage import changed, deleted
from services.api.refusal import Refusal
from services.api.sending import remember
from shared import events as ev
from shared.crypto import hash_secret
from services.api.context import ApiContext

TOKEN_TTL = timedelta(hours=24)
VERIFY_PATH = "/api/email/sandbox-emails/verify"


def recipient_view(r: ev.SandboxRecipientSaved) -> dict[str, Any]:
    return {"id": r.recipient_id, "email": r.email, "status": "verified" if r.verified else "pending",
            "verified": r.verified, "created_at": r.created_at.isoformat(),
            "verified_at": r.verified_at.isoformat() if r.verified_at else None}


def list_recipients(rt: ApiContext, svc: ev.ServiceSaved) -> list[dict[str, Any]]:
    return [recipient_view(r) for r in rt.control.state.sandbox_of(svc.service_id)]


def verification_request(rt: ApiContext, r: ev.SandboxRecipientSaved, svc: ev.ServiceSaved, link: str) -> ev.SendRequested:
    text = (f"Someone asked to receive test email from the Postline service \"{svc.name}\" at this address.\n\n"
            f"Confirm: {link}\n\nThe link works once and expires in 24 hours. If this wasn't you, ignore it.\n")
    html = (f"<p>Someone asked to receive test email from the Postline service <b>{escape(svc.name)}</b> at this "
            f"address.</p><p><a href=\"{escape(link)}\">Confirm this address</a></p>"
            "<p>The link works once and expires in 24 hours. If this wasn't you, ignore it.</p>")
    return ev.SendRequested(workspace_id=svc.workspace_id, service_id=svc.service_id, email_id=ev.new_id(),
                            mode="sandbox", to=[r.email], subject="Confirm your address for test email",
                            html=html, text=text, recipients=[r.email], tags=["postline-sandbox-verification"],
                            **{"from": f"Postline <{rt.settings.sandbox_from}>"})


async def add_recipient(rt: ApiContext, svc: ev.ServiceSaved, email: str) -> dict[str, Any] | Refusal:
    """A verified address as it is; else a new link (pending addresses get a fresh one) and its
    message's id as ``verification_email_id``."""
    existing = [r for r in rt.control.state.sandbox_of(svc.service_id) if r.email == email]
    if existing and existing[0].verified:
        return recipient_view(existing[0])
    token = secrets.token_urlsafe(32)
    now = ev.utcnow()
    if existing:  # a new link for a pending address (never a whole state: it may be verified meanwhile)
        rec = await changed(rt, existing[0], token_hash=hash_secret(token), token_expires_at=now + TOKEN_TTL)
        if isinstance(rec, Refusal):
            return rec
    else:
        rec = ev.SandboxRecipientSaved(
            workspace_id=svc.workspace_id, service_id=svc.service_id, recipient_id=ev.new_id(), email=email,
            token_hash=hash_secret(token), token_expires_at=now + TOKEN_TTL, created_at=now)
        await rt.control.save(rec)
    req = verification_request(rt, rec, svc, f"{rt.settings.base_url}{VERIFY_PATH}?token={token}")
    await rt.log.append(ev.Topic.REQUESTS, req.email_id, ev.encode(req))
    remember(rt, req, {})  # a message of this workspace, known at once (the dev inbox checks ownership)
    return {**recipient_view(rec), "verification_email_id": req.email_id}


async def remove_recipient(rt: ApiContext, svc: ev.ServiceSaved, recipient_id: str) -> Refusal | None:
    """404 when ``recipient_id`` is not one of ``svc``'s sandbox recipients."""
    rec = rt.control.state.sandbox.get(recipient_id)
    if rec is None or rec.service_id != svc.service_id:
        return Refusal(404, f"sandbox email {recipient_id} not found")
    return await deleted(rt, rec)


async def verify_token(rt: ApiContext, token: str) -> ev.SandboxRecipientSaved | Refusal:
    """Follow a confirmation link: the recipient, now verified (the token is used up); 400
    when the token is unknown, used or expired."""
    h = hash_secret(token)
    rec = next((r for r in rt.control.state.sandbox.values() if r.token_hash == h), None)
    now = ev.utcnow()
    if rec is None or rec.token_expires_at is None or rec.token_expires_at < now:
        return Refusal(400, "This link is invalid or has expired.")
    return await changed(rt, rec, verified=True, verified_at=now, token_hash=None, token_expires_at=None)
