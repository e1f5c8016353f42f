"""What every dashboard page shares: the signed-in caller, templates, forms with CSRF,
and the HTML answers for "sign in first", "not found" and "forbidden"."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from services.api import actors
from services.api.auth import caught_up
from services.api.context import ApiContext
from services.api.dashboard import session as sess
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
    """The signed-in person: their workspace and session (for CSRF tokens)."""

    rt: ApiContext
    workspace: ev.WorkspaceSaved
    session: sess.Session


def rt_of(request: Request) -> ApiContext:
    return request.app.state.runtime


async def caller(request: Request) -> Caller:
    """FastAPI dependency: the session's workspace, else ``SignInRequired``. Catches up with
    the control log first (read-your-writes: a change made on another process is shown)."""
    await caught_up(rt_of(request))
    return session_caller(request)


def session_caller(request: Request) -> Caller:
    """The session's workspace as this process knows it now (no catch-up: for the sign-in
    form's redirect and error pages), else ``SignInRequired``."""
    rt = rt_of(request)
    state = rt.control.state

    def token_hash_of(wid: str) -> str | None:
        ws = state.workspaces.get(wid)
        return ws.token_hash if ws else None

    s = sess.read(rt.settings.master_key, request.cookies.get(sess.COOKIE), token_hash_of)
    if s is None:
        raise SignInRequired()
    ws = state.workspaces[s.workspace_id]
    actors.admin_token(ws.token_hash)  # the audit log's actor (signed in with the admin token)
    return Caller(rt, ws, s)


def service_of(c: Caller, service_id: str) -> ev.ServiceSaved:
    """The caller's service ``service_id``; another workspace's is a 404 like a missing one."""
    svc = c.rt.control.state.service(c.workspace.workspace_id, service_id)
    if svc is None:
        raise PageError(404, "This service does not exist.")
    return svc


async def form(request: Request, c: Caller) -> dict[str, str]:
    """The posted form, after its CSRF token was checked (403 without a valid one)."""
    data = await request.form()
    if not sess.csrf_ok(c.session.csrf, data.get("csrf")):
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
    response = templates.TemplateResponse(request, name, {"csrf": c.session.csrf if c else "", **ctx},
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
