"""The message log of a service (filters: status, recipient, tag, time, template) and a message's
page: its recipients' states and the timeline of its events."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from services.api.dashboard.web import Caller, PageError, caller, page, service_of
from services.api.email_lookup import email_record
from services.api.manage.templates import template_filter
from shared import events as ev
from shared.store import queries

router = APIRouter(include_in_schema=False)
STATUSES = ev.MESSAGE_STATUSES
SINCE = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# Fields every event has; the rest (smtp_code, reason, bounce_class, url, ...) are shown as they come.
COMMON = {"id", "v", "type", "time", "recipient", *ev.LIFECYCLE_FIELDS}


def details(event: dict) -> list[tuple[str, str]]:
    shown = [(k, tls_text(v) if k == "tls" else str(v)) for k, v in event.items()
             if k not in COMMON and v not in (None, "", [], {})]
    if event.get("type") == "delivered" and not event.get("tls"):
        shown.append(("tls", "none (plaintext)"))
    return shown


def tls_text(tls: dict) -> str:
    """``TLSv1.3 · TLS_AES_256_GCM_SHA384 · verified: mta-sts`` (docs/delivery.md, "Outbound TLS")."""
    return " · ".join(filter(None, [tls.get("version"), tls.get("cipher"), f"verified: {tls.get('verified', 'none')}"]))


def check_filters(status: str, since: str, cursor: str) -> None:
    """A 400 page naming the field, for values the form never offers."""
    if status and status not in STATUSES:
        raise PageError(400, f"status: one of {', '.join(STATUSES)}")
    if since and since not in SINCE:
        raise PageError(400, "since: one of 1h, 24h, 7d, 30d")
    try:
        if cursor:
            queries.decode_cursor(cursor)
    except Exception:
        raise PageError(400, "cursor: not a cursor from a previous page") from None


@router.get("/services/{service_id}/messages")
async def messages_page(request: Request, service_id: str, c: Caller = Depends(caller),
                        status: str = "", to: str = Query("", max_length=320), tag: str = Query("", max_length=64),
                        since: str = "", cursor: str = Query("", max_length=500),
                        template: str = Query("", max_length=200)) -> Response:
    svc = service_of(c, service_id)
    check_filters(status, since, cursor)
    if c.rt.store is None:
        raise PageError(503, "The message log needs the analytics store, which this process does not have.")
    filters = {"status": status, "to": to.strip().lower(), "tag": tag.strip(), "since": since,
               "template": template.strip()}
    start = datetime.now(timezone.utc) - SINCE[since] if since else None
    try:
        result = await queries.message_log(c.rt.store, svc.service_id, status or None, filters["to"] or None,
                                           filters["tag"] or None, 50, cursor or None, since=start,
                                           template=template_filter(c.rt, svc, filters["template"]))
    except Exception:
        raise PageError(503, "The analytics store is unavailable; reload in a moment.") from None
    return page(request, "messages.html", c=c, svc=svc, items=result["data"], next_cursor=result["next_cursor"],
                filters=filters, statuses=STATUSES, tab="messages")


@router.get("/services/{service_id}/messages/{email_id}")
async def message_page(request: Request, service_id: str, email_id: str, c: Caller = Depends(caller)) -> Response:
    svc = service_of(c, service_id)
    record = await email_record(c.rt, svc, email_id)
    if record is None:
        raise PageError(404, "This message does not exist, or analytics has not loaded it yet.")
    return page(request, "message.html", c=c, svc=svc, m=record, details=details, tab="messages")
