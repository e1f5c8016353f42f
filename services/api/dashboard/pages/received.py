"""A service's received mail (docs/receiving.md): the list, newest first, and one message —
its HTML in a sandboxed frame (scripts, forms and remote loads off, as the dev inbox shows
mail), the text part, verdicts, threading, headers and attachments (signed download links)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.api.dashboard.web import CSP_WITH_MAIL, Caller, caller, or_error_page, page, service_of
from services.api.manage import receiving as api

router = APIRouter(include_in_schema=False)
PAGE = 50


@router.get("/services/{service_id}/received")
async def received_page(request: Request, service_id: str, after: str | None = None,
                        c: Caller = Depends(caller)) -> Response:
    svc = service_of(c, service_id)
    listed = or_error_page(await api.list_received(c.rt, svc, PAGE, (after or "")[:64] or None, None))
    return page(request, "received.html", c=c, svc=svc, mails=listed["data"], more=listed["has_more"], tab="received")


@router.get("/services/{service_id}/received/{received_id}")
async def received_message(request: Request, service_id: str, received_id: str, c: Caller = Depends(caller)) -> Response:
    svc = service_of(c, service_id)
    mail = or_error_page(await api.find_received(c.rt, svc, received_id[:64]))
    attachments = [api.with_link(c.rt, svc, mail["id"], a) for a in mail["attachments"]]
    return page(request, "received_message.html", c=c, svc=svc, mail=mail, attachments=attachments,
                csp=CSP_WITH_MAIL, tab="received")
