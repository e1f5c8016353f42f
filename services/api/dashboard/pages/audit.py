"""The workspace's audit log (shared/audit.py): who changed what, newest first, with filters."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.api.dashboard.web import Caller, caller, page
from services.api.manage import audit as api
from services.api.refusal import Refusal

router = APIRouter(include_in_schema=False)
PAGE = 50
PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}


@router.get("/audit-log")
async def audit_page(request: Request, actor: str = "", target: str = "", since: str = "", after: str = "",
                     c: Caller = Depends(caller)) -> Response:
    filters = {"actor": actor.strip()[:200], "target": target.strip()[:300], "since": since if since in PERIODS else ""}
    start = datetime.now(timezone.utc) - PERIODS[since] if since in PERIODS else None
    found = api.page(c.rt, c.workspace, api.AuditFilter(filters["actor"] or None, filters["target"] or None, start,
                                                        None, after[:64] or None, PAGE))
    if isinstance(found, Refusal):  # a stale cursor (the entry is no longer kept): the newest page
        found = api.page(c.rt, c.workspace, api.AuditFilter(filters["actor"] or None, filters["target"] or None,
                                                            start, None, None, PAGE))
    assert not isinstance(found, Refusal)  # only the cursor can be refused
    return page(request, "audit.html", c=c, items=found["data"], next_cursor=found["next_cursor"], filters=filters,
                tab="audit")
