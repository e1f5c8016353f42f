"""Sign in (workspace admin token, or a user's address + password [+ TOTP code]); sign out.

Every way in ends in ``signed_in``: a session record on the control log and its cookie.
Every refused credential goes through ``credential_failed`` — the one point where a
sign-in attempt is known to have failed (throttling hooks in there)."""
from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.api.auth import caught_up, client_address, count_failure, throttled
from services.api.dashboard import session as sess
from services.api.dashboard.web import Caller, SignInRequired, caller, form, page, redirect, require, rt_of, session_caller
from services.api.manage import sessions, users
from services.api.manage.credentials import MAX_PASSWORD
from services.api.throttle import account_of
from shared import events as ev
from shared.crypto import hash_secret

router = APIRouter(include_in_schema=False)
MAX_FIELD = 320  # an address's longest legal length; a token or code is shorter


def _signed_in(request: Request) -> bool:
    try:
        session_caller(request)
        return True
    except SignInRequired:
        return False


def secure(request: Request) -> bool:
    return (rt_of(request).settings.public_url or "").startswith("https://")


@router.get("/")
async def home(c: Caller = Depends(caller)) -> Response:
    return redirect("/services")


@router.get("/signin")
async def signin_form(request: Request) -> Response:
    return signin_page(request)


def signin_page(request: Request, error: str | None = None, status: int = 200,
                retry_after: int | None = None) -> Response:
    """The sign-in forms; ``error`` and ``status`` come from this package only, never from
    the query string (a link must not put its own words on the sign-in page)."""
    if error is None and _signed_in(request):
        return redirect("/services")
    pre = secrets.token_urlsafe(16)
    response = page(request, "signin.html", status=status, signin_token=pre, error=error,
                    oidc=rt_of(request).settings.oidc_issuer is not None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    response.set_cookie(sess.PRE_COOKIE, pre, httponly=True, samesite="strict", secure=secure(request),
                        max_age=3600, path="/signin")
    return response


async def _signin_form(request: Request) -> dict[str, str] | None:
    """The posted sign-in form when its double-submitted token matches the cookie, else None."""
    data = await request.form()
    pre = request.cookies.get(sess.PRE_COOKIE)
    if not pre or not sess.csrf_ok(pre, data.get("csrf")):
        return None
    return {k: v.strip()[:MAX_FIELD] if k != "password" else v[:MAX_PASSWORD + 1]
            for k, v in data.items() if isinstance(v, str)}


def blocked_page(request: Request, account: str) -> Response | None:
    """429 (the form, with Retry-After) while this address — or ``account``, for an address
    that failed recently — is blocked (services/api/throttle.py), whatever the credential;
    None when the credential may be checked."""
    if refused := throttled(rt_of(request), client_address(request), account):
        return signin_page(request, f"Too many failed sign-ins. Try again in {refused.retry_after} s.", 429,
                           retry_after=refused.retry_after)
    return None


async def credential_failed(request: Request, account: str, message: str) -> Response:
    """A sign-in credential was refused (``account``: the address, or a token's public
    prefix): counted for the throttle, then the form again with ``message``, 401."""
    if account:
        await count_failure(rt_of(request), "dashboard", client_address(request), account)
    return signin_page(request, message, 401)


async def signed_in(request: Request, ws: ev.WorkspaceSaved, user: ev.UserSaved | None, method: str,
                    to: str = "/services") -> Response:
    """Open a session (on the control log) and set its cookie; redirect to ``to``."""
    rt = rt_of(request)
    cookie = await sessions.open_session(rt, ws, user, method, request.client.host if request.client else None,
                                         request.headers.get("user-agent"))
    response = redirect(to)
    response.set_cookie(sess.COOKIE, cookie, httponly=True, samesite="strict",
                        secure=secure(request), max_age=sess.LIFETIME, path="/")
    response.delete_cookie(sess.PRE_COOKIE, path="/signin")
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Sign in with a workspace admin token: a session acting as the workspace's owner."""
    data = await _signin_form(request)
    if data is None:
        return signin_page(request, "The sign-in form expired. Try again.", 403)
    token = data.get("token", "")
    if blocked := blocked_page(request, account_of(token)):
        return blocked
    rt = rt_of(request)
    await caught_up(rt)  # a workspace re-keyed a moment ago on another process
    ws = rt.control.state.workspace_by_token_hash(hash_secret(token)) if token else None
    if ws is None:
        return await credential_failed(request, account_of(token), "That admin token is not valid.")
    return await signed_in(request, ws, None, "admin_token")


@router.post("/signin/password")
async def signin_password(request: Request) -> Response:
    """Sign in with an address and password, plus the TOTP (or a recovery) code when the
    user has turned it on. One message for every failure: the form never tells which part
    was wrong, nor whether the address has an account."""
    data = await _signin_form(request)
    if data is None:
        return signin_page(request, "The sign-in form expired. Try again.", 403)
    email = data.get("email", "").lower()
    if blocked := blocked_page(request, email):
        return blocked
    rt = rt_of(request)
    await caught_up(rt)
    user = await users.password_sign_in(rt, email, data.get("password", ""), data.get("code", ""))
    if user is None:
        return await credential_failed(request, email, "That address, password or code is not valid.")
    return await signed_in(request, rt.control.state.workspaces[user.workspace_id], user, "password")


@router.post("/signout")
async def signout(request: Request, c: Caller = Depends(require("self"))) -> Response:
    """End this session: its cookie stops working on every process."""
    await form(request, c)
    await sessions.end(c.rt, c.session)
    response = redirect("/signin")
    response.delete_cookie(sess.COOKIE, path="/")
    return response
