"""Dashboard users of a workspace: invite (mailed through Postline itself), accept with a
password, list, change role, remove, and the password sign-in.

The invitation is an ordinary send request on ``email.requests``: the relay delivers it as
any message (the dev inbox captures it on the embedded default). Its sender is the platform's
own, ``POSTLINE_SANDBOX_FROM``, under the reserved service id ``SYSTEM_SERVICE`` (no
customer service can have it: theirs are UUIDs), so it reaches the address whatever
services the workspace has. The link (``/accept-invite?token=…``) works once, for
``INVITE_TTL``; inviting the address again sends a fresh link and the old one stops working.
The link is the only credential: the mail is marked (``CREDENTIAL_MARK``) so the dev inbox
shows it only to who may invite, never to a viewer who would become the invited admin.

One user record per (workspace, address): its id is derived from both, so two invitations
of one address racing on two processes make one user, not two."""
from __future__ import annotations

import secrets
from datetime import timedelta
from html import escape
from typing import Any

from services.api.access import CREDENTIAL_MARK, Actor, role_change_refusal
from services.api.context import ApiContext
from services.api.manage import changed, credentials, deleted
from services.api.refusal import Refusal
from services.api.schemas import SandboxEmailCreate
from services.api.sending import remember
from shared import events as ev
from shared.crypto import hash_secret
from shared.runtime import DEFAULT_WORKSPACE

INVITE_TTL = timedelta(hours=72)
ACCEPT_PATH = "/accept-invite"
SYSTEM_SERVICE = "postline-system"
MAX_USERS = 500  # per workspace
RESEND_AFTER = timedelta(minutes=1)  # a fresh link to one address at most this often (no mail bombing)


class UserInvite(SandboxEmailCreate):
    """An invitation: the address (validated as a sandbox recipient's) and the role."""

    role: ev.Role = "viewer"


def user_view(u: ev.UserSaved) -> dict[str, Any]:
    return {"id": u.user_id, "email": u.email, "role": u.role, "status": u.status, "totp": u.totp_sealed is not None,
            "sso": u.oidc_subject is not None, "created_at": u.created_at}


def list_users(rt: ApiContext, workspace_id: str) -> list[dict[str, Any]]:
    return [user_view(u) for u in rt.control.state.users_of(workspace_id)]


def user_id_for(workspace_id: str, email: str) -> str:
    return ev.derived_id("user", workspace_id, email.lower())


async def invite(rt: ApiContext, actor: Actor, email: str, role: ev.Role) -> dict[str, Any] | Refusal:
    """Invite ``email`` with ``role`` (a pending invitation gets a fresh link, at most once a
    minute: else 429); 409 when the address is already an active user, 403 when ``actor``
    may not grant ``role``, 400 past ``MAX_USERS``."""
    if refused := role_change_refusal(actor, None, role):
        return refused
    email = email.lower()
    state = rt.control.state
    existing = state.user(actor.workspace_id, user_id_for(actor.workspace_id, email))
    if existing is not None and existing.status == "active":
        return Refusal(409, f"{email} is already a member of this workspace", field="email")
    if existing is not None and existing.invite_expires_at is not None and \
            existing.invite_expires_at - INVITE_TTL > ev.utcnow() - RESEND_AFTER:
        return Refusal(429, f"an invitation was sent to {email} less than a minute ago", field="email",
                       retry_after=int(RESEND_AFTER.total_seconds()))
    if existing is None and len(state.users_of(actor.workspace_id)) >= MAX_USERS:
        return Refusal(400, f"a workspace has at most {MAX_USERS} users", field="email")
    token = secrets.token_urlsafe(32)
    now = ev.utcnow()
    fields = {"role": role, "invite_token_hash": hash_secret(token), "invite_expires_at": now + INVITE_TTL,
              "invited_by": actor.name}
    if existing is not None:
        rec = await changed(rt, existing, **fields)
        if isinstance(rec, Refusal):
            return rec
    else:
        rec = ev.UserSaved(workspace_id=actor.workspace_id, user_id=user_id_for(actor.workspace_id, email), email=email,
                           created_at=now, **fields)
        await rt.control.save(rec)
    req = invitation_request(rt, rec, f"{rt.settings.base_url}{ACCEPT_PATH}?token={token}")
    await rt.log.append(ev.Topic.REQUESTS, req.email_id, ev.encode(req))
    remember(rt, req, {})  # the dev inbox shows it to this workspace at once
    return {**user_view(rec), "invitation_email_id": req.email_id}


def invitation_request(rt: ApiContext, user: ev.UserSaved, link: str) -> ev.SendRequested:
    """The invitation mail; marked as carrying a credential (its link makes the reader the
    invited member), so the dev inbox shows it only to who may invite (services/api/access.py)."""
    ws = rt.control.state.workspaces.get(user.workspace_id)
    name = ws.name if ws else user.workspace_id
    text = (f"You are invited to the Postline workspace \"{name}\" as {user.role}.\n\n"
            f"Accept and choose a password: {link}\n\nThe link works once and expires in 72 hours. "
            "If you did not expect this, ignore it.\n")
    html = (f"<p>You are invited to the Postline workspace <b>{escape(name)}</b> as {escape(user.role)}.</p>"
            f"<p><a href=\"{escape(link)}\">Accept the invitation</a></p>"
            "<p>The link works once and expires in 72 hours. If you did not expect this, ignore it.</p>")
    return ev.SendRequested(workspace_id=user.workspace_id, service_id=SYSTEM_SERVICE, email_id=ev.new_id(),
                            mode="sandbox", to=[user.email], subject=f"You are invited to {name} on Postline",
                            html=html, text=text, recipients=[user.email], tags=["postline-invitation"],
                            headers={CREDENTIAL_MARK: "invitation"},
                            **{"from": f"Postline <{rt.settings.sandbox_from}>"})


def invited_user(rt: ApiContext, token: str) -> ev.UserSaved | Refusal:
    """The user a pending, unexpired invitation token is for; 400 otherwise."""
    h = hash_secret(token)
    rec = next((u for u in rt.control.state.users.values() if u.invite_token_hash == h), None) if token else None
    if rec is None or rec.invite_expires_at is None or rec.invite_expires_at < ev.utcnow():
        return Refusal(400, "This invitation is invalid, used or expired. Ask for a new one.", field="token")
    return rec


async def accept(rt: ApiContext, token: str, password: str) -> ev.UserSaved | Refusal:
    """Accept an invitation: the password is set, the user is active, the link is used up."""
    rec = invited_user(rt, token)
    if isinstance(rec, Refusal):
        return rec
    if problem := credentials.password_problem(password):
        return Refusal(400, problem.partition(": ")[2], field="password")
    return await changed(rt, rec, status="active", password_hash=await credentials.hash_password(password),
                         invite_token_hash=None, invite_expires_at=None)


async def set_role(rt: ApiContext, actor: Actor, user_id: str, role: ev.Role) -> ev.UserSaved | Refusal:
    rec = rt.control.state.user(actor.workspace_id, user_id)
    if rec is None:
        return Refusal(404, f"user {user_id} not found")
    if refused := role_change_refusal(actor, rec.role, role):
        return refused
    return await changed(rt, rec, role=role)


async def remove(rt: ApiContext, actor: Actor, user_id: str) -> Refusal | None:
    """Remove a user: their sessions and personal tokens stop working at once."""
    rec = rt.control.state.user(actor.workspace_id, user_id)
    if rec is None:
        return Refusal(404, f"user {user_id} not found")
    if refused := role_change_refusal(actor, rec.role, None):
        return refused
    state = rt.control.state
    for extra in [*state.sessions_of(actor.workspace_id, user_id), *state.user_tokens_of(user_id)]:
        await deleted(rt, extra)
    return await deleted(rt, rec)


async def password_sign_in(rt: ApiContext, email: str, password: str, code: str) -> ev.UserSaved | None:
    """The active user of ``email`` whose password matches and, when the user has TOTP, whose
    code (or an unused recovery code) is right; the code is used up. None otherwise (one
    answer for every failure: the form does not tell which part was wrong)."""
    candidates = [u for u in rt.control.state.users_by_email(email) if u.status == "active" and u.password_hash]
    user = None
    for u in candidates[:5]:  # one address in a few workspaces at most
        if await credentials.password_ok(u.password_hash, password):
            user = u
            break
    if not candidates:
        await credentials.password_ok(None, password)  # as slow as a real check: no address oracle
    if user is None or user.totp_sealed is None:
        return user
    return await second_factor(rt, user, code)


async def second_factor(rt: ApiContext, user: ev.UserSaved, code: str) -> ev.UserSaved | None:
    """``user`` when ``code`` is its next TOTP code or one of its unused recovery codes (used up)."""
    assert user.totp_sealed is not None
    step = credentials.totp_step(rt.settings.master_key, user.totp_sealed, user, code, user.totp_last_step)
    if step is not None:
        outcome = await changed(rt, user, totp_last_step=step)  # a replay of this code loses the race: 409
        return None if isinstance(outcome, Refusal) else outcome
    h = credentials.recovery_hash(code)
    if code and h in user.recovery_hashes:
        outcome = await changed(rt, user, recovery_hashes=[r for r in user.recovery_hashes if r != h])
        return None if isinstance(outcome, Refusal) else outcome
    return None


async def sso_user(rt: ApiContext, subject: str, email: str, allowed_domains: set[str]) -> ev.UserSaved | Refusal:
    """The user an OpenID Connect identity signs in as: the one already linked to ``subject``;
    else the user (invited or active) of ``email`` — linked now, an invitation accepted —; else,
    when the address's domain is allowed, a new ``viewer`` of the default workspace. 403 for
    an address neither invited nor allowed, or one already linked to another identity."""
    state = rt.control.state
    linked = [u for u in state.users.values() if u.oidc_subject == subject]
    if linked:
        return linked[0]
    known = state.users_by_email(email)
    if known:
        user = known[0]
        if user.oidc_subject is not None:
            return Refusal(403, f"{email} signs in with another single sign-on identity")
        return await changed(rt, user, oidc_subject=subject, status="active", invite_token_hash=None,
                             invite_expires_at=None)
    if email.rpartition("@")[2] not in allowed_domains:
        return Refusal(403, f"{email} is not invited to Postline, and its domain may not sign up")
    workspace_id = DEFAULT_WORKSPACE
    if len(state.users_of(workspace_id)) >= MAX_USERS:
        return Refusal(403, f"a workspace has at most {MAX_USERS} users")
    rec = ev.UserSaved(workspace_id=workspace_id, user_id=user_id_for(workspace_id, email), email=email, role="viewer",
                       status="active", oidc_subject=subject, invited_by="sso", created_at=ev.utcnow())
    await rt.control.save(rec)
    return rec
