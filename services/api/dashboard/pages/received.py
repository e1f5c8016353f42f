"""A service's received mail (docs/receiving.md): the list, newest first, with the service's
routing rules (add, delete), and one message — its HTML in a sandboxed frame (scripts, forms
and remote loads off, as the dev inbox shows mail), the text part, verdicts, threading,
headers and attachments (signed download links)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.dashboard.web import (BAD_INPUT, CSP_WITH_MAIL, Caller, caller, form, or_error_page, page, problem,
                                        redirect, service_of)
from services.api.manage import receiving as api
from services.api.manage import receiving_rules as rules
from services.api.refusal import Refusal
from shared import events as ev

router = APIRouter(include_in_schema=False)
PAGE = 50


async def _received(request: Request, c: Caller, svc: ev.ServiceSaved, after: str | None = None, status: int = 200,
                    error: str | None = None) -> HTMLResponse:
    listed = or_error_page(await api.list_received(c.rt, svc, PAGE, after, None))
    webhooks = c.rt.control.state.webhooks_of(svc.service_id)
    return page(request, "received.html", status=status, c=c, svc=svc, mails=listed["data"], more=listed["has_more"],
                rules=rules.list_rules(c.rt, svc), webhooks={w.webhook_id: w.url for w in webhooks}, error=error,
                tab="received")


@router.get("/services/{service_id}/received")
async def received_page(request: Request, service_id: str, after: str | None = None,
                        c: Caller = Depends(caller)) -> Response:
    return await _received(request, c, service_of(c, service_id), (after or "")[:64] or None)


@router.post("/services/{service_id}/received/rules")
async def rule_add(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    """pattern, forward_to (addresses separated by commas or lines), a ``webhook_<id>`` box
    per webhook (none ticked: every webhook subscribed to email.received)."""
    data = await form(request, c)
    svc = service_of(c, service_id)
    try:
        body = rules.RuleCreate(pattern=data.get("pattern", ""),
                                forward_to=[a.strip() for a in data.get("forward_to", "").replace("\n", ",").split(",")
                                            if a.strip()],
                                webhook_ids=[k.removeprefix("webhook_") for k in data if k.startswith("webhook_")] or None)
    except BAD_INPUT as exc:
        return await _received(request, c, svc, status=400, error=problem(exc))
    created = await rules.create_rule(c.rt, svc, body)
    if isinstance(created, Refusal):
        return await _received(request, c, svc, status=created.status, error=problem(created))
    return redirect(f"/services/{service_id}/received")


@router.post("/services/{service_id}/received/rules/{rule_id}/delete")
async def rule_delete(request: Request, service_id: str, rule_id: str, c: Caller = Depends(caller)) -> Response:
    await form(request, c)
    svc = service_of(c, service_id)
    rule = or_error_page(rules.find_rule(c.rt, svc, rule_id[:64]))
    or_error_page(await rules.delete_rule(c.rt, rule))  # 404/409 when deleted or changed meanwhile
    return redirect(f"/services/{service_id}/received")


@router.get("/services/{service_id}/received/{received_id}")
async def received_message(request: Request, service_id: str, received_id: str, c: Caller = Depends(caller)) -> Response:
    svc = service_of(c, service_id)
    mail = or_error_page(await api.find_received(c.rt, svc, received_id[:64]))
    attachments = [api.with_link(c.rt, svc, mail["id"], a) for a in mail["attachments"]]
    return page(request, "received_message.html", c=c, svc=svc, mail=mail, attachments=attachments,
                csp=CSP_WITH_MAIL, tab="received")
