"""Single sign-on with OpenID Connect (services/api/oidc.py): off unless POSTLINE_OIDC_ISSUER
is set. The flow's secrets ride in a sealed cookie scoped to the callback (SameSite=Lax: the
provider's redirect back is a cross-site navigation)."""
from __future__ import annotations

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.api import oidc
from services.api.auth import caught_up
from services.api.dashboard.pages.auth import credential_failed, secure, signed_in, signin_page
from services.api.dashboard.web import PageError, redirect, rt_of
from services.api.manage import users
from services.api.refusal import Refusal

router = APIRouter(include_in_schema=False)
FLOW_COOKIE = "pl_oidc"
MAX_PARAM = 2048


@router.get("/signin/oidc")
async def sso_begin(request: Request) -> Response:
    """Redirect to the identity provider, with a fresh state, nonce and PKCE challenge."""
    settings = rt_of(request).settings
    if not oidc.enabled(settings):
        raise PageError(404, "Single sign-on is not set up on this installation.")
    try:
        url, flow = await oidc.begin(settings)
    except (httpx.HTTPError, KeyError, TypeError, ValueError):  # the provider is down or misconfigured: say so
        return signin_page(request, "The single sign-on provider cannot be reached. Try again later.", 503)
    response = redirect(url)
    response.set_cookie(FLOW_COOKIE, flow, httponly=True, samesite="lax", secure=secure(request),
                        max_age=oidc.FLOW_SECONDS, path=oidc.CALLBACK_PATH)
    return response


@router.get(oidc.CALLBACK_PATH)
async def sso_callback(request: Request) -> Response:
    """Verify the provider's answer, find or create the user, open a session. The session
    cookie (SameSite=Strict) is set by a page that moves on by itself: a Strict cookie set
    during a cross-site redirect chain would not be sent on the redirect's next hop."""
    rt = rt_of(request)
    if not oidc.enabled(rt.settings):
        raise PageError(404, "Single sign-on is not set up on this installation.")
    params = {k: v[:MAX_PARAM] for k, v in request.query_params.items()}
    identity = await oidc.finish(rt.settings, request.cookies.get(FLOW_COOKIE), params)
    if isinstance(identity, Refusal):
        return await _refused(request, "sso", identity)
    await caught_up(rt)
    user = await users.sso_user(rt, identity.subject, identity.email, oidc.allowed_domains(rt.settings))
    if isinstance(user, Refusal):
        return await _refused(request, identity.email, user)
    response = await signed_in(request, rt.control.state.workspaces[user.workspace_id], user, "oidc",
                               to="/signin/oidc/done")
    response.delete_cookie(FLOW_COOKIE, path=oidc.CALLBACK_PATH)
    return response


async def _refused(request: Request, account: str, refusal: Refusal) -> Response:
    if refusal.status == 400:
        return signin_page(request, refusal.text, 400)
    return await credential_failed(request, account, refusal.text)


@router.get("/signin/oidc/done")
async def sso_done(request: Request) -> Response:
    """A same-site hop after the provider's redirect, so the Strict session cookie is sent."""
    response = Response('<!doctype html><meta http-equiv="refresh" content="0;url=/services">'
                        '<p><a href="/services">Continue</a></p>', media_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response
