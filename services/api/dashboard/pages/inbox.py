"""The dev inbox (embedded delivery): captured messages and one message's HTML (in a
sandboxed frame, scripts off), text part, headers and raw source.

The inbox file is shared by the installation; a workspace sees only the mail of its own
messages (the ``X-Postline-Id`` header names the message, whose workspace the analytics
store or this process's recent sends know)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.dashboard.web import CSP_WITH_MAIL, Caller, PageError, caller, page
from services.api.inbox_access import own_email_ids
from shared.devinbox import DevInbox

router = APIRouter(include_in_schema=False)
LIST = 50  # parsing a captured mail's headers costs ~0.4 ms: a page stays fast


def _inbox(c: Caller) -> DevInbox:
    if c.rt.inbox is None:
        raise PageError(404, "The dev inbox is on only with POSTLINE_DELIVERY=inbox (the embedded default).")
    return c.rt.inbox


async def _own_ids(c: Caller, email_ids: list[str]) -> set[str]:
    return await own_email_ids(c.rt, c.workspace.workspace_id, email_ids)


@router.get("/inbox")
async def inbox_page(request: Request, c: Caller = Depends(caller)) -> Response:
    mails = _inbox(c).list(limit=LIST)
    mine = await _own_ids(c, [m["postline_id"] for m in mails])
    return page(request, "inbox.html", c=c, mails=[m for m in mails if m["postline_id"] in mine], tab="inbox")


@router.get("/inbox/{mail_id}")
async def inbox_message(request: Request, mail_id: str, c: Caller = Depends(caller)) -> Response:
    parts = _inbox(c).message(mail_id[:64], with_raw=True, show_inline=True)
    if parts is None or parts["postline_id"] not in await _own_ids(c, [parts["postline_id"]]):
        raise PageError(404, "This message is not in your dev inbox.")
    return page(request, "inbox_message.html", c=c, mail=parts, mail_id=mail_id, csp=CSP_WITH_MAIL, tab="inbox")
