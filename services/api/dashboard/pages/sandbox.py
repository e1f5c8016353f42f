"""A service's sandbox recipients: add (a confirmation link is mailed), status, remove."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.dashboard.pages.owned import owned
from services.api.dashboard.web import (BAD_INPUT, Caller, caller, form, or_error_page, page, problem, redirect,
                                        service_of)
from services.api.manage import sandbox as manage
from services.api.refusal import Refusal
from services.api.schemas import SandboxEmailCreate
from shared import events as ev

router = APIRouter(include_in_schema=False)


def _sandbox(request: Request, c: Caller, svc: ev.ServiceSaved, status: int = 200, error: str | None = None,
             notice: str | None = None) -> HTMLResponse:
    items = manage.list_recipients(c.rt, svc)
    return page(request, "sandbox.html", status=status, c=c, svc=svc, recipients=items, error=error, notice=notice,
                tab="sandbox")


@router.get("/services/{service_id}/sandbox")
async def sandbox_page(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    return _sandbox(request, c, service_of(c, service_id))


@router.post("/services/{service_id}/sandbox")
async def sandbox_add(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    data = await form(request, c)
    svc = service_of(c, service_id)
    try:
        body = SandboxEmailCreate(email=data.get("email", ""))
    except BAD_INPUT as exc:
        return _sandbox(request, c, svc, 400, problem(exc))
    r = await manage.add_recipient(c.rt, svc, body.email)
    if isinstance(r, Refusal):
        return _sandbox(request, c, svc, r.status, problem(r))
    if r["verified"]:
        notice = f"{r['email']} is already verified."
    elif r.get("verification_email_id"):
        notice = f"A confirmation link was mailed to {r['email']}."
    else:  # one mail a minute per address (manage/sandbox.py): the link mailed before still works
        notice = f"A confirmation link was mailed to {r['email']} less than a minute ago; it still works."
    return _sandbox(request, c, svc, 201, notice=notice)


@router.post("/services/{service_id}/sandbox/{recipient_id}/delete")
async def sandbox_remove(request: Request, service_id: str, recipient_id: str, c: Caller = Depends(caller)) -> Response:
    await form(request, c)
    svc = service_of(c, service_id)
    owned(c.rt.control.state.sandbox, recipient_id, svc, "sandbox recipient")
    or_error_page(await manage.remove_recipient(c.rt, svc, recipient_id))
    return redirect(f"/services/{service_id}/sandbox")
