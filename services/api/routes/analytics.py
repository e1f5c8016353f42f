"""Stats and the message log of a service, read from ClickHouse (its tables: docs/analytics.md)."""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from services.api.auth import owned_service, runtime
from services.api.context import ApiContext
from services.api.errors import http_error
from services.api.refusal import Refusal
from services.api.manage.templates import template_filter
from shared import events as ev
from shared.store import insights, queries
from shared.store.port import AnalyticsStore

router = APIRouter(prefix="/api/email/services/{service_id}", tags=["analytics"])


def _store(rt: ApiContext) -> AnalyticsStore:
    if rt.store is None:
        raise HTTPException(503, "analytics store not configured on this process")
    return rt.store


@router.get("/stats", response_model=None)
async def stats(period: Literal["1h", "24h", "7d", "30d"] = "7d", bucket: Literal["day", "hour"] | None = None,
                tag: str | None = Query(None, max_length=64),
                template: str | None = Query(None, max_length=200, description="A template's id or alias."),
                group_by: str | None = Query(None, max_length=40, description=(
                    "Counts per group (docs/analytics.md): the `limit` largest groups, then `other`. One of "
                    + ", ".join(f"`{g}`" for g in insights.GROUP_BY) + "; another is a 422.")),
                limit: int = Query(10, ge=1, le=100, description="With `group_by`: how many groups before `other`."),
                svc: ev.ServiceSaved = Depends(owned_service), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Counts of sent, delivered, bounced, complained, dropped, deferred, failed, opened,
    clicked and unsubscribed, plus unique_opened / unique_clicked (distinct email+recipient):
    totals and per bucket (zero-filled). Default bucket: hour for 1h/24h, else day. ``template``:
    only messages rendered from that template (docs/templates.md). ``group_by``: the same
    counts (without the unique_* ones) per provider, recipient domain, bounce class, source
    IP, tag, template or TLS check, under ``groups`` (docs/analytics.md)."""
    bucket = bucket or ("hour" if period in ("1h", "24h") else "day")
    if group_by is not None and group_by not in insights.GROUP_BY:
        raise http_error(Refusal(422, f"group_by: {group_by!r} is not a grouping; one of {', '.join(insights.GROUP_BY)}"))
    try:
        if group_by:
            return await insights.grouped_stats(_store(rt), svc.service_id, group_by, period, bucket, tag, limit,
                                                template=template_filter(rt, svc, template))
        return await queries.stats(_store(rt), svc.service_id, period, bucket, tag,
                                   template=template_filter(rt, svc, template))
    except HTTPException:
        raise
    except Exception as exc:
        raise HTTPException(503, "analytics store unavailable; retry shortly") from exc


@router.get("/stats/latency", response_model=None)
async def stats_latency(period: Literal["1h", "24h", "7d", "30d"] = "7d",
                        svc: ev.ServiceSaved = Depends(owned_service),
                        rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Queued→delivered milliseconds, p50/p90/p99, overall and per mailbox provider, over the
    deliveries of ``period`` (bfloat16 quantiles, within 1%: docs/analytics.md)."""
    try:
        return await insights.latency(_store(rt), svc.service_id, period)
    except HTTPException:
        raise
    except Exception as exc:
        raise HTTPException(503, "analytics store unavailable; retry shortly") from exc


@router.get("/messages", response_model=None)
async def messages(status: ev.MessageStatus | None = None,
                   to: str | None = Query(None, max_length=320), tag: str | None = Query(None, max_length=64),
                   template: str | None = Query(None, max_length=200, description="A template's id or alias."),
                   limit: int = Query(50, ge=1, le=500), cursor: str | None = Query(None, max_length=500),
                   svc: ev.ServiceSaved = Depends(owned_service),
                   rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """The message log, newest first, filtered by latest status, recipient or tag; page with
    ``cursor`` = the previous page's ``next_cursor``."""
    try:
        if cursor:
            queries.decode_cursor(cursor)
    except Exception:
        raise HTTPException(400, "cursor: not a cursor from a previous page") from None
    try:
        return await queries.message_log(_store(rt), svc.service_id, status, to, tag, limit, cursor,
                                         template=template_filter(rt, svc, template))
    except HTTPException:
        raise
    except Exception as exc:
        raise HTTPException(503, "analytics store unavailable; retry shortly") from exc
