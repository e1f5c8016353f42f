"""The web dashboard (the README's "Dashboard"): server-rendered pages at ``/`` on the API's
port, signed in as a user (password [+ TOTP], or OpenID Connect) or with a workspace admin
token, with a role that every page and form is checked against (services/api/access.py);
sessions live on the control log (services/api/manage/sessions.py). Works without JavaScript.

``mount(app)`` adds the pages, their static files (CSS and a small JS, served from this
package: no CDN) and the HTML answers for "sign in first" (303 to /signin, no data) and
page errors (404 for another workspace's ids, 403 for a form without its CSRF token)."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from services.api.dashboard.pages import (account, audit, auth, deliverability, domains, inbox, invitations, keys,
                                          messages, people, received, sandbox, services, shaping, sso, suppressions,
                                          templates, webhooks)
from services.api.dashboard.web import HERE, PageError, SignInRequired, page, redirect, session_caller

STATIC_PATH = "/dashboard-static"


def mount(app: FastAPI) -> None:
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="dashboard-static")
    for module in (auth, services, deliverability, domains, keys, sandbox, webhooks, templates, suppressions, messages,
                   inbox, received, people, account, invitations, sso, audit, shaping):
        app.include_router(module.router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> RedirectResponse:
        return redirect("/signin")

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> HTMLResponse:
        try:
            c = session_caller(request)
        except SignInRequired:
            c = None
        return page(request, "error.html", status=exc.status, c=c, message=exc.message)
