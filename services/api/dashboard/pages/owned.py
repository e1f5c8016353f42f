"""Records of a service (domains, keys, recipients, webhooks) looked up by id, tenant-checked."""
from __future__ import annotations

from services.api.dashboard.web import PageError
from shared import events as ev


def owned(table: dict, ident: str, svc: ev.ServiceSaved, what: str):
    """The record ``ident`` of ``table`` if it belongs to ``svc``, else a 404 page."""
    rec = table.get(ident)
    if rec is None or rec.service_id != svc.service_id:
        raise PageError(404, f"This {what} does not exist.")
    return rec
