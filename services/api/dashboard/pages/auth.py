"""Sign in with a workspace admin token; sign out."""
from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.auth import caught_up, client_address, count_failure, throttled
from services.api.dashboard import session as sess
from services.api.throttle import account_of
from services.api.dashboard.web import Caller, SignInRequired, caller, form, page, redirect, rt_of, session_caller
from shared.crypto import hash_secret

router = APIRouter(include_in_schema=False)


def _signed_in(request: Request) -> bool:
    try:
        session_caller(request)
        return True
    except SignInRequired:
        return False


def _secure(request: Request) -> bool:
    return (rt_of(request).settings.public_url or "").startswith("https://")


@router.get("/")
async def home(c: Caller = Depends(caller)) -> Response:
    return redirect("/services")


@router.get("/signin")
async def signin_form(request: Request) -> Response:
    return _signin_page(request)


def _signin_page(request: Request, error: str | None = None, status: int = 200,
                 retry_after: int | None = None) -> Response:
    """The sign-in form; ``error`` and ``status`` come from this module only, never from the
    query string (a link must not put its own words on the sign-in page)."""
    if error is None and _signed_in(request):
        return redirect("/services")
    pre = secrets.token_urlsafe(16)
    response = page(request, "signin.html", status=status, signin_token=pre, error=error)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    response.set_cookie(sess.PRE_COOKIE, pre, httponly=True, samesite="strict", secure=_secure(request),
                        max_age=3600, path="/signin")
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Check the double-submitted form token, the throttle (services/api/throttle.py: 429
    while this address is blocked, whatever the token), then the admin token; set the session
    cookie. A wrong token is counted."""
    data = await request.form()
    pre = request.cookies.get(sess.PRE_COOKIE)
    if not pre or not sess.csrf_ok(pre, data.get("csrf")):
        return _signin_page(request, "The sign-in form expired. Try again.", 403)
    token = str(data.get("token") or "").strip()
    rt, address = rt_of(request), client_address(request)
    if refused := throttled(rt, address, account_of(token)):
        return _signin_page(request, f"Too many failed sign-ins. Try again in {refused.retry_after} s.", 429,
                            retry_after=refused.retry_after)
    await caught_up(rt)  # a workspace re-keyed a moment ago on another process
    ws = rt.control.state.workspace_by_token_hash(hash_secret(token)) if token else None
    if ws is None:
        if token:
            await count_failure(rt, "dashboard", address, account_of(token))
        return _signin_page(request, "That admin token is not valid.", 401)
    response = redirect("/services")
    response.set_cookie(sess.COOKIE, sess.issue(rt.settings.master_key, ws.workspace_id, ws.token_hash),
                        httponly=True, samesite="strict", secure=_secure(request), max_age=sess.LIFETIME, path="/")
    response.delete_cookie(sess.PRE_COOKIE, path="/signin")
    return response


@router.post("/signout")
async def signout(request: Request, c: Caller = Depends(caller)) -> Response:
    await form(request, c)
    response = redirect("/signin")
    response.delete_cookie(sess.COOKIE, path="/")
    return response
