"""A service's sandbox recipients: add (a confirmation link is mailed), status, remove."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from services.api.dashboard.pages.owned import owned
from services.api.dashboard.web import BAD_INPUT, Caller, caller, form, page, problem, redirect, service_of
from services.api.routes import sandbox as sandbox_api
from services.api.schemas import SandboxEmailCreate

router = APIRouter(include_in_schema=False)


def _sandbox(request, c, svc, status=200, error=None, notice=None):
    items = [sandbox_api.recipient_view(r) for r in c.rt.control.state.sandbox_of(svc.service_id)]
    return page(request, "sandbox.html", status=status, c=c, svc=svc, recipients=items, error=error, notice=notice,
                tab="sandbox")


@router.get("/services/{service_id}/sandbox")
async def sandbox_page(request: Request, service_id: str, c: Caller = Depends(caller)):
    return _sandbox(request, c, service_of(c, service_id))


@router.post("/services/{service_id}/sandbox")
async def sandbox_add(request: Request, service_id: str, c: Caller = Depends(caller)):
    data = await form(request, c)
    svc = service_of(c, service_id)
    try:
        r = await sandbox_api.add_sandbox_email(SandboxEmailCreate(email=data.get("email", "")), svc=svc, rt=c.rt)
    except BAD_INPUT as exc:
        return _sandbox(request, c, svc, 400, problem(exc))
    notice = (f"{r['email']} is already verified." if r["verified"]
              else f"A confirmation link was mailed to {r['email']}.")
    return _sandbox(request, c, svc, 201, notice=notice)


@router.post("/services/{service_id}/sandbox/{recipient_id}/delete")
async def sandbox_remove(request: Request, service_id: str, recipient_id: str, c: Caller = Depends(caller)):
    await form(request, c)
    svc = service_of(c, service_id)
    owned(c.rt.control.state.sandbox, recipient_id, svc, "sandbox recipient")
    await sandbox_api.delete_sandbox_email(recipient_id, svc=svc, rt=c.rt)
    return redirect(f"/services/{service_id}/sandbox")
