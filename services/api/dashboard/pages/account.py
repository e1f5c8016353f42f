"""One's own account (the ``self`` permission: every role): active sessions (end one, sign
out everywhere), the TOTP second factor (turn on with a code, recovery codes shown once;
turn off), personal API tokens for the management API (shown once; revoke)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.dashboard import session as sess
from services.api.dashboard.web import Caller, PageError, form, page, redirect, require
from services.api.manage import credentials, second_factor, sessions, user_tokens
from services.api.refusal import Refusal

router = APIRouter(include_in_schema=False)
self_service = require("self")


def _account(request: Request, c: Caller, status: int = 200, error: str | None = None, **shown: Any) -> HTMLResponse:
    user = c.rt.control.state.user(c.workspace.workspace_id, c.actor.user_id) if c.actor.user_id else None
    pending = second_factor.pending_uri(c.rt, user) if user else None
    return page(request, "account.html", status=status, c=c, user=user, error=error, tab="account",
                sessions=sessions.sessions_view(c.rt, c.actor), tokens=user_tokens.list_tokens(c.rt, c.actor),
                pending=pending, **shown)


@router.get("/account")
async def account_page(request: Request, c: Caller = Depends(self_service)) -> Response:
    return _account(request, c)


@router.post("/account/sessions/{session_id}/end")
async def session_end(request: Request, session_id: str, c: Caller = Depends(self_service)) -> Response:
    await form(request, c)
    rec = sessions.owned_session(c.rt, c.actor, session_id)
    if rec is None:
        raise PageError(404, "This session does not exist.")
    await sessions.end(c.rt, rec)
    return redirect("/signin" if rec.session_id == c.session.session_id else "/account")


@router.post("/account/signout-everywhere")
async def signout_everywhere(request: Request, c: Caller = Depends(self_service)) -> Response:
    """End every session of this user (or of the admin token), this one included."""
    await form(request, c)
    await sessions.end_all(c.rt, c.actor)
    response = redirect("/signin")
    response.delete_cookie(sess.COOKIE, path="/")
    return response


@router.post("/account/totp")
async def totp_begin(request: Request, c: Caller = Depends(self_service)) -> Response:
    """Start turning TOTP on: a new secret to add to an authenticator app (not active yet)."""
    await form(request, c)
    outcome = await second_factor.begin(c.rt, c.actor)
    if isinstance(outcome, Refusal):
        return _account(request, c, outcome.status, outcome.text)
    return redirect("/account")


@router.post("/account/totp/confirm")
async def totp_confirm(request: Request, c: Caller = Depends(self_service)) -> Response:
    """Turn TOTP on with a first code; the recovery codes are shown in this one answer."""
    data = await form(request, c)
    outcome = await second_factor.confirm(c.rt, c.actor, data.get("code", "")[:20])
    if isinstance(outcome, Refusal):
        return _account(request, c, outcome.status, outcome.text)
    return _account(request, c, 201, recovery_codes=outcome)


@router.post("/account/totp/disable")
async def totp_disable(request: Request, c: Caller = Depends(self_service)) -> Response:
    data = await form(request, c)
    outcome = await second_factor.disable(c.rt, c.actor, data.get("password", "")[:credentials.MAX_PASSWORD])
    if isinstance(outcome, Refusal):
        return _account(request, c, outcome.status, outcome.text)
    return redirect("/account")


@router.post("/account/tokens")
async def token_create(request: Request, c: Caller = Depends(self_service)) -> Response:
    data = await form(request, c)
    name = data.get("name", "").strip()
    if not 1 <= len(name) <= 100:
        return _account(request, c, 400, "name: 1 to 100 characters")
    outcome = await user_tokens.create_token(c.rt, c.actor, name)
    if isinstance(outcome, Refusal):
        return _account(request, c, outcome.status, outcome.text)
    return _account(request, c, 201, created=outcome)


@router.post("/account/tokens/{token_id}/revoke")
async def token_revoke(request: Request, token_id: str, c: Caller = Depends(self_service)) -> Response:
    await form(request, c)
    refused = await user_tokens.revoke_token(c.rt, c.actor, token_id)
    if refused is not None:
        raise PageError(refused.status, refused.text)
    return redirect("/account")
