"""``GET /api/email/audit-log``: who changed what in the workspace (docs/security.md, "Audit
log"); the HTTP door of services/api/manage/audit.py."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query

from services.api.auth import runtime, workspace
from services.api.context import ApiContext
from services.api.errors import unless_refused
from services.api.manage import audit as manage
from services.api.schemas import AuditPage
from shared import events as ev

router = APIRouter(prefix="/api/email/audit-log", tags=["audit log"])


@router.get("", response_model=AuditPage)
async def audit_log(actor: str | None = Query(None, max_length=200, description="Actor type (`api_key`) or id."),
                    target: str | None = Query(None, max_length=300, description="Target id, type (`service`) or `type:id`."),
                    since: datetime | None = Query(None, description="Entries at or after this time (ISO 8601)."),
                    until: datetime | None = Query(None, description="Entries before this time (ISO 8601)."),
                    after: str | None = Query(None, max_length=64, description="Cursor: `next_cursor` of the previous page."),
                    limit: int = Query(50, ge=1, le=manage.MAX_LIMIT),
                    ws: ev.WorkspaceSaved = Depends(workspace), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """The workspace's control changes, newest first: actor, action, target, the fields
    before → after (secrets redacted), time, source address, request id."""
    return unless_refused(manage.page(rt, ws, manage.AuditFilter(actor, target, since, until, after, limit)))
