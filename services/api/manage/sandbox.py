"""Sandbox recipients: add (a single-use, expiring confirmation link is mailed through the
pipeline itself, from the sandbox sender, so it reaches the address in any mode), list,
verify by the link's token, remove.

Adding an address must not be a way to bomb it with mail (docs/security.md): a service
mails at most ``CONFIRMATIONS_PER_DAY`` confirmations a day (a cap of their own: its 50
sandbox sends stay whole) and one address at most one per ``RESEND_AFTER`` (the invitations'
interval). Both are counted on the service-wide counters
of shared/quota, together with the mail's append, so they hold whatever the number of API
processes or replicas."""
from __future__ import annotations

import secrets
from datetime import timedelta
from html import escape
from typing import Any

from services.api.access import CREDENTIAL_MARK
from services.api.limits import SANDBOX
from services.api.manage import changed, deleted
from services.api.manage.users import RESEND_AFTER
from services.api.refusal import Refusal
from services.api.sending import admit_requests, rate_limited, remember
from shared import events as ev
from shared.crypto import hash_secret
from shared.quota import Take, Window
from services.api.context import ApiContext

TOKEN_TTL = timedelta(hours=24)
VERIFY_PATH = "/api/email/sandbox-emails/verify"
RESEND_SCOPE = "sandbox verification"  # the counter of confirmation mails per address (one per RESEND_AFTER)
CONFIRMATIONS_SCOPE, CONFIRMATIONS_PER_DAY = "sandbox confirmations", 50  # per service, a sliding day
_, DAY_SECONDS, DAY_SLOT = SANDBOX  # the sandbox cap's window: 24 h in 5-minute slots


def recipient_view(r: ev.SandboxRecipientSaved) -> dict[str, Any]:
    return {"id": r.recipient_id, "email": r.email, "status": "verified" if r.verified else "pending",
            "verified": r.verified, "created_at": r.created_at.isoformat(),
            "verified_at": r.verified_at.isoformat() if r.verified_at else None}


def list_recipients(rt: ApiContext, svc: ev.ServiceSaved) -> list[dict[str, Any]]:
    return [recipient_view(r) for r in rt.control.state.sandbox_of(svc.service_id)]


def verification_request(rt: ApiContext, email: str, svc: ev.ServiceSaved, link: str) -> ev.SendRequested:
    """The confirmation mail to ``email``; marked as carrying a credential, so the dev inbox
    shows it only to who may add sandbox addresses (services/api/access.py)."""
    text = (f"Someone asked to receive test email from the Postline service \"{svc.name}\" at this address.\n\n"
            f"Confirm: {link}\n\nThe link works once and expires in 24 hours. If this wasn't you, ignore it.\n")
    html = (f"<p>Someone asked to receive test email from the Postline service <b>{escape(svc.name)}</b> at this "
            f"address.</p><p><a href=\"{escape(link)}\">Confirm this address</a></p>"
            "<p>The link works once and expires in 24 hours. If this wasn't you, ignore it.</p>")
    return ev.SendRequested(workspace_id=svc.workspace_id, service_id=svc.service_id, email_id=ev.new_id(),
                            mode="sandbox", to=[email], subject="Confirm your address for test email",
                            html=html, text=text, recipients=[email], tags=["postline-sandbox-verification"],
                            headers={CREDENTIAL_MARK: "sandbox-verification"},
                            **{"from": f"Postline <{rt.settings.sandbox_from}>"})


def cap_take(svc: ev.ServiceSaved) -> Take:
    """One confirmation mail of ``svc``: a unit of its confirmations' day (a sliding 24 h, as
    the sandbox cap's), not of its sandbox sends nor of its sending rates, which are for what
    its own code sends."""
    return Take(svc.service_id, 1, (Window(CONFIRMATIONS_SCOPE, DAY_SECONDS, DAY_SLOT, CONFIRMATIONS_PER_DAY),))


def address_take(svc: ev.ServiceSaved, email: str) -> Take:
    """One confirmation mail to ``email`` for ``svc``: at most one per ``RESEND_AFTER``. Its
    own counter key (a derived id: no address characters in a counter's key), under one scope
    for every address, so expired counts are swept (shared/quota/sqlite.py)."""
    seconds = int(RESEND_AFTER.total_seconds())
    return Take(ev.derived_id("sandbox-verification", svc.service_id, email), 1, (Window(RESEND_SCOPE, seconds, 1, 1),))


async def add_recipient(rt: ApiContext, svc: ev.ServiceSaved, email: str) -> dict[str, Any] | Refusal:
    """A verified address as it is. Else a confirmation link is mailed (a pending address gets
    a fresh one; its older link stops working) and the message's id is ``verification_email_id``.

    Nothing is sent, and nothing changes, when a link was mailed to the address less than
    ``RESEND_AFTER`` ago: a pending address is answered as it is, with ``verification_email_id``
    null; an address not listed (removed and added again meanwhile) is a 429. Over the service's
    confirmations' daily cap it is a 429 (``rate_limited``)."""
    existing = [r for r in rt.control.state.sandbox_of(svc.service_id) if r.email == email]
    if existing and existing[0].verified:
        return recipient_view(existing[0])
    token = secrets.token_urlsafe(32)
    req = verification_request(rt, email, svc, f"{rt.settings.base_url}{VERIFY_PATH}?token={token}")
    # counted as one: the service's confirmations' day and the address's minute, or neither (then nothing is
    # appended); ``req`` is the first take's record, the address's take has none
    admitted = await admit_requests(rt, [cap_take(svc), address_take(svc, email)], [req], all_or_nothing=True)
    if isinstance(admitted, Refusal):
        return admitted
    if not admitted[0].allowed:
        if admitted[0].scope != RESEND_SCOPE:
            return rate_limited(admitted[0])
        if existing:
            return recipient_view(existing[0])
        return Refusal(429, f"a confirmation link was mailed to {email} less than a minute ago", field="email",
                       retry_after=admitted[0].retry_after)
    # the mail is durable: its token becomes the address's (a failure here leaves a dead link, not a live one)
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
