"""People of the workspace: the users, their roles and status; invite, change a role, remove
(the ``people`` permission: owners and admins). Everyone signed in may read the list."""
from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.dashboard.web import (BAD_INPUT, Caller, PageError, caller, form, or_error_page, page, problem,
                                        redirect, require)
from services.api.manage import users as manage
from services.api.refusal import Refusal
from shared import events as ev

router = APIRouter(include_in_schema=False)


def _people(request: Request, c: Caller, status: int = 200, error: str | None = None,
            invited: dict[str, Any] | None = None) -> HTMLResponse:
    return page(request, "people.html", status=status, c=c, people=manage.list_users(c.rt, c.workspace.workspace_id),
                roles=ev.ROLES, invited=invited, error=error, tab="people")


@router.get("/people")
async def people_page(request: Request, c: Caller = Depends(caller)) -> Response:
    return _people(request, c)


@router.post("/people")
async def people_invite(request: Request, c: Caller = Depends(require("people"))) -> Response:
    """Invite an address with a role: the invitation is mailed through Postline itself."""
    data = await form(request, c)
    try:
        body = manage.UserInvite(email=data.get("email", ""), role=data.get("role", "viewer"))
    except BAD_INPUT as exc:
        return _people(request, c, 400, problem(exc))
    outcome = await manage.invite(c.rt, c.actor, body.email, body.role)
    if isinstance(outcome, Refusal):
        return _people(request, c, outcome.status, problem(outcome))
    return _people(request, c, 201, invited=outcome)


@router.post("/people/{user_id}/role")
async def people_role(request: Request, user_id: str, c: Caller = Depends(require("people"))) -> Response:
    data = await form(request, c)
    if c.rt.control.state.user(c.workspace.workspace_id, user_id) is None:
        raise PageError(404, "This user does not exist.")
    role = data.get("role", "")
    if role not in ev.ROLES:
        return _people(request, c, 400, f"role: one of {', '.join(ev.ROLES)}")
    outcome = await manage.set_role(c.rt, c.actor, user_id, cast(ev.Role, role))
    if isinstance(outcome, Refusal) and outcome.status != 404:
        return _people(request, c, outcome.status, problem(outcome))
    or_error_page(outcome)
    return redirect("/people")


@router.post("/people/{user_id}/remove")
async def people_remove(request: Request, user_id: str, c: Caller = Depends(require("people"))) -> Response:
    await form(request, c)
    refused = await manage.remove(c.rt, c.actor, user_id)
    if refused is not None and refused.status != 404:
        return _people(request, c, refused.status, problem(refused))
    if refused is not None:
        or_error_page(refused)
    return redirect("/people")
