"""Resend's ``GET /emails`` for a full-access key: the service's sent emails, newest first,
``limit`` (1–100, default 20), ``after`` / ``before`` (an email id), ``has_more``.

Read from the analytics store (the read model ``GET /emails/{id}`` also reads), so an email
is listed once analytics has loaded it: about a second after it was accepted."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.api.auth import ServiceCaller, full_access_key, runtime
from services.api.context import ApiContext
from services.api.email_lookup import resend_last_event, rfc_message_id
from services.api.errors import http_error
from services.api.manage.webhooks import NO_STORE
from services.api.refusal import Refusal
from services.api.routes.resend.paging import Paging, envelope, iso, paging
from shared.store import queries

router = APIRouter(tags=["resend: emails"])
DEFAULT_LIMIT = 20


def listed(rt: ApiContext, row: dict[str, Any]) -> dict[str, Any]:
    """Resend's list item (``object: "email"``); times as ISO 8601; ``last_event`` and
    ``message_id`` as ``GET /emails/{id}`` gives them (services/api/email_lookup.py)."""
    return {"object": "email", "id": row["email_id"], "from": row["from_addr"], "to": row["to_addrs"],
            "cc": row["cc_addrs"], "bcc": row["bcc_addrs"], "reply_to": row["reply_to"], "subject": row["subject"],
            "created_at": iso(row["time"]), "scheduled_at": row["scheduled_at"] or None,
            "last_event": resend_last_event(row["last_event"]),
            "message_id": rfc_message_id(rt, row["email_id"], row["sending_domain"] or None)}


@router.get("/emails")
async def list_emails(p: Paging = Depends(paging), caller: ServiceCaller = Depends(full_access_key),
                      rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    if rt.store is None:
        raise http_error(NO_STORE)
    found = await queries.email_page(rt.store, caller.service.service_id, p.limit or DEFAULT_LIMIT, p.after, p.before)
    if found is None:
        raise http_error(Refusal(400, f"no email with id {p.after or p.before!r} in this service",
                                 "after" if p.after else "before"))
    rows, more = found
    return envelope([listed(rt, r) for r in rows], more)
