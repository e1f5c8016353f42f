"""The audit log of a workspace (shared/audit.py): filtered, newest first, a page at a time.
Shared by ``GET /api/email/audit-log`` and the dashboard's audit page."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from services.api.refusal import Refusal
from shared import events as ev
from services.api.context import ApiContext

MAX_LIMIT = 200


@dataclass(frozen=True)
class AuditFilter:
    """``actor``: an actor type (``api_key``) or id; ``target``: a target id, type
    (``service``) or ``type:id``; ``since``/``until``: times (inclusive, exclusive);
    ``after``: the cursor (the last entry's id of the previous page)."""
    actor: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: str | None = None
    limit: int = 50

    def matches(self, e: ev.AuditEntry) -> bool:
        if self.actor and self.actor not in (e.actor_type, e.actor_id):
            return False
        if self.target and self.target not in (e.target_id, e.target_type, f"{e.target_type}:{e.target_id}"):
            return False
        if self.since and e.time < _utc(self.since):
            return False
        return not (self.until and e.time >= _utc(self.until))


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # a time without a zone is UTC


def entry_view(e: ev.AuditEntry) -> dict[str, Any]:
    return {"id": e.id, "time": e.time.isoformat(), "actor": {"type": e.actor_type, "id": e.actor_id},
            "action": e.action, "target": {"type": e.target_type, "id": e.target_id}, "service_id": e.service_id,
            "before": e.before, "after": e.after, "source": e.source, "request_id": e.request_id}


def page(rt: ApiContext, ws: ev.WorkspaceSaved, f: AuditFilter) -> dict[str, Any] | Refusal:
    """``{data, has_more, next_cursor}``; 400 for an unknown cursor or a limit out of range."""
    if not 1 <= f.limit <= MAX_LIMIT:
        return Refusal(400, f"must be between 1 and {MAX_LIMIT}", field="limit")
    index = rt.control.state.audit
    before = None
    if f.after:
        before = index.position(f.after)
        if before is None:
            return Refusal(400, "unknown cursor: pass the next_cursor of a previous page", field="after")
    found: list[ev.AuditEntry] = []
    for entry in index.newest(ws.workspace_id, before):
        if f.matches(entry):
            found.append(entry)
            if len(found) > f.limit:
                break
    shown = found[:f.limit]
    more = len(found) > f.limit
    return {"data": [entry_view(e) for e in shown], "has_more": more, "next_cursor": shown[-1].id if more else None}
