"""Tenant isolation of the dev inbox: the inbox file is shared by the installation, and a
workspace sees only the mail of its own messages (a captured mail's ``X-Postline-Id`` names
the message; the message's workspace is known to this process's recent sends, to the
analytics store, or — for a message another API process of `postline all` accepted moments
ago — to the request on the embedded log). Used by the API (/dev/inbox) and the dashboard."""
from __future__ import annotations

import logging

from services.api.context import ApiContext

from services.api.email_lookup import accepted_elsewhere
from shared.store import queries

log = logging.getLogger(__name__)


async def own_email_ids(rt: ApiContext, wid: str, email_ids: list[str]) -> set[str]:
    """Which of ``email_ids`` are messages of workspace ``wid``: this process's recent sends,
    then the analytics store (when it is down, only what this process knows), then the
    embedded log (a message analytics has not loaded yet)."""
    recent = rt.recent
    mine = set()
    for eid in email_ids:
        hit = recent.get(eid) if recent else None
        if hit and hit[0].get("workspace_id") == wid:  # RecentSends keeps a summary dict
            mine.add(eid)
    rest = [e for e in email_ids if e and e not in mine]
    if rest and rt.store is not None:
        try:
            mine.update(await queries.own_email_ids(rt.store, wid, rest))
        except Exception:  # store down: show only what this process knows
            log.warning("dev inbox: analytics store unavailable; showing this process's recent sends only")
    for eid in [e for e in rest if e not in mine]:
        summary = accepted_elsewhere(rt, eid)
        if summary and summary.get("workspace_id") == wid:
            mine.add(eid)
    return mine
