"""What every dashboard page shares: the signed-in caller, templates, forms with CSRF,
and the HTML answers for "sign in first", "not found" and "forbidden"."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from services.api import actors
from services.api.access import Actor, Permission, permission_of_method, refusal
from services.api.auth import caught_up
from services.api.context import ApiContext
from services.api.dashboard import session as sess
from services.api.manage import sessions
from services.api.refusal import Refusal
from services.api.validation_errors import first_error
from shared import events as ev

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
# Pages load only Postline's own files; the dev inbox message page relaxes style-src for the
# captured HTML in its sandboxed srcdoc frame (which inherits this policy).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
CSP_WITH_MAIL = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'").replace(
    "img-src 'self' data:", "img-src 'self' data:; frame-src 'self'")


# what the API's input models raise on a form they refuse (the operations return refusals)
BAD_INPUT = (ValidationError,)
T = TypeVar("T")


class SignInRequired(Exception):
    """No valid session: answer with a redirect to the sign-in page, and no data."""


class PageError(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


@dataclass(frozen=True)
class Caller:
    """The signed-in person: their workspace, who they are (``actor``: the admin token or a
    user, with the role) and their session's CSRF token."""

    rt: ApiContext
    workspace: ev.WorkspaceSaved
    actor: Actor
    session: ev.SessionSaved
    csrf: str

    def can(self, permission: Permission) -> bool:
        """For templates: whether to offer a form (the server decides again on submit)."""
        return refusal(self.actor, permission) is None


def rt_of(request: Request) -> ApiContext:
    return request.app.state.runtime


def require(permission: Permission | None = None) -> Callable[[Request], Awaitable[Caller]]:
    """A FastAPI dependency: the signed-in caller, allowed ``permission`` — the one place a
    page or form is authorised (services/api/access.py). ``None``: by the method (pages are
    ``read``, forms ``write``), so a new form is closed to viewers unless it says otherwise.
    No session → ``SignInRequired``; not allowed → a 403 page. Catches up with the control
    log first (read-your-writes: a change or sign-out on another process is seen)."""
    async def dependency(request: Request) -> Caller:
        await caught_up(rt_of(request))
        c = session_caller(request)
        await sessions.touch(c.rt, c.session)
        if refused := refusal(c.actor, permission or permission_of_method(request.method)):
            raise PageError(403, refused.text[0].upper() + refused.text[1:] + ".")
        return c
    return dependency


caller = require()  # reading pages and ordinary forms; see ``require`` for people and self-service


def session_caller(request: Request) -> Caller:
    """The session's caller as this process knows it now (no catch-up: for the sign-in
    form's redirect and error pages), else ``SignInRequired``."""
    rt = rt_of(request)
    state = rt.control.state
    rec = sessions.find(state, request.cookies.get(sess.COOKIE), ev.utcnow())
    actor = sessions.actor_of(state, rec) if rec is not None else None
    if rec is None or actor is None:
        raise SignInRequired()
    request.state.actor = actor
    ws = state.workspaces[rec.workspace_id]
    actors.acting(actor, ws)  # the audit log's actor
    return Caller(rt, ws, actor, rec, sess.csrf_for(rt.settings.master_key, rec.session_id))


def service_of(c: Caller, service_id: str) -> ev.ServiceSaved:
    """The caller's service ``service_id``; another workspace's is a 404 like a missing one."""
    svc = c.rt.control.state.service(c.workspace.workspace_id, service_id)
    if svc is None:
        raise PageError(404, "This service does not exist.")
    return svc


async def form(request: Request, c: Caller) -> dict[str, str]:
    """The posted form, after its CSRF token was checked (403 without a valid one)."""
    data = await request.form()
    if not sess.csrf_ok(c.csrf, data.get("csrf")):
        raise PageError(403, "This form has expired or did not come from this dashboard. Reload the page and try again.")
    return {k: v for k, v in data.items() if isinstance(v, str)}


def problem(exc: ValidationError | Refusal) -> str:
    """A person-readable message from a refused form or a management operation's refusal."""
    if isinstance(exc, Refusal):
        return exc.text
    return first_error(exc.errors())


def or_error_page(outcome: T | Refusal) -> T:
    """A management operation's value, or its refusal as an error page (404 deleted
    meanwhile, 409 changed meanwhile, ...)."""
    if isinstance(outcome, Refusal):
        raise PageError(outcome.status, outcome.text)
    return outcome


def page(request: Request, name: str, status: int = 200, csp: str = CSP, **ctx: Any) -> HTMLResponse:
    c = ctx.get("c")
    response = templates.TemplateResponse(request, name, {"csrf": c.csrf if c else "", **ctx},
                                          status_code=status)
    response.headers["Content-Security-Policy"] = csp
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _when(value: Any) -> str:  # str (ISO), datetime, epoch seconds, None or ""
    """ISO strings, datetimes and epoch seconds → ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    if value in (None, ""):
        return ""
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S")


templates.env.filters["when"] = _when
