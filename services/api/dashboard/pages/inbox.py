"""The dev inbox (embedded delivery): captured messages and one message's HTML (in a
sandboxed frame, scripts off), text part, headers and raw source.

The inbox file is shared by the installation; a workspace sees only the mail of its own
messages (the ``X-Postline-Id`` header names the message, whose workspace the analytics
store or this process's recent sends know). Of those, a person sees what their role may
read: mail carrying a credential (an invitation, a sandbox confirmation link) only with the
permission that sends it (services/api/access.py, ``readable_mail``): a viewer who could
take an invitation's link from here would become the invited admin."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.api.access import readable_mail
from services.api.dashboard.web import CSP_WITH_MAIL, Caller, PageError, caller, page
from services.api.inbox_access import own_email_ids
from shared.devinbox import DevInbox, Mail

router = APIRouter(include_in_schema=False)
LIST = 50  # parsing a captured mail's headers costs ~0.4 ms: a page stays fast


def _inbox(c: Caller) -> DevInbox:
    if c.rt.inbox is None:
        raise PageError(404, "The dev inbox is on only with POSTLINE_DELIVERY=inbox (the embedded default).")
    return c.rt.inbox


async def _readable(c: Caller, mails: list[Mail]) -> list[Mail]:
    """Those of ``mails`` that are the caller's workspace's and that the caller's role may read."""
    mine = await own_email_ids(c.rt, c.workspace.workspace_id, [m["postline_id"] for m in mails])
    return await readable_mail(c.actor, _inbox(c), [m for m in mails if m["postline_id"] in mine])


@router.get("/inbox")
async def inbox_page(request: Request, c: Caller = Depends(caller)) -> Response:
    mails = await _readable(c, _inbox(c).list(limit=LIST))
    return page(request, "inbox.html", c=c, mails=mails, tab="inbox")


@router.get("/inbox/{mail_id}")
async def inbox_message(request: Request, mail_id: str, c: Caller = Depends(caller)) -> Response:
    parts = _inbox(c).message(mail_id[:64], with_raw=True, show_inline=True)
    if parts is None or not await _readable(c, [parts]):
        raise PageError(404, "This message is not in your dev inbox.")
    return page(request, "inbox_message.html", c=c, mail=parts, mail_id=mail_id, csp=CSP_WITH_MAIL, tab="inbox")
