"""Accepting an invitation (public: the link's token is the credential): choose a password,
then the new user is signed in. The token travels in the form, not a cookie, and is used up."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.api.auth import caught_up
from services.api.dashboard.pages.auth import signed_in
from services.api.dashboard.web import page, rt_of
from services.api.manage import users
from services.api.manage.credentials import MAX_PASSWORD, MIN_PASSWORD
from services.api.refusal import Refusal

router = APIRouter(include_in_schema=False)
MAX_TOKEN = 100


def _form(request: Request, token: str, status: int = 200, error: str | None = None) -> Response:
    rec = users.invited_user(rt_of(request), token)
    if isinstance(rec, Refusal):
        return page(request, "error.html", status=400, c=None, message=rec.message)
    return page(request, "accept_invite.html", status=status, c=None, token=token, invited=rec, error=error,
                min_password=MIN_PASSWORD)


@router.get(users.ACCEPT_PATH)
async def accept_form(request: Request, token: str = "") -> Response:
    await caught_up(rt_of(request))  # invited a moment ago on another process
    return _form(request, token[:MAX_TOKEN])


@router.post(users.ACCEPT_PATH)
async def accept(request: Request) -> Response:
    """Set the password (twice, equal), activate the user, open a session."""
    data = await request.form()
    token, password, again = (str(data.get(k) or "") for k in ("token", "password", "password_again"))
    token, password, again = token[:MAX_TOKEN], password[:MAX_PASSWORD + 1], again[:MAX_PASSWORD + 1]
    rt = rt_of(request)
    await caught_up(rt)
    if password != again:
        return _form(request, token, 400, "password: the two passwords differ")
    outcome = await users.accept(rt, token, password)
    if isinstance(outcome, Refusal):
        return _form(request, token, outcome.status, outcome.text)
    return await signed_in(request, rt.control.state.workspaces[outcome.workspace_id], outcome, "password",
                           to="/account")
