"""Records of a service (domains, keys, recipients, webhooks) looked up by id, tenant-checked."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar

from services.api.dashboard.web import PageError
from shared import events as ev


class _OfService(Protocol):
    @property
    def service_id(self) -> str: ...


R = TypeVar("R", bound=_OfService)


def owned(table: Mapping[str, R], ident: str, svc: ev.ServiceSaved, what: str) -> R:
    """The record ``ident`` of ``table`` if it belongs to ``svc``, else a 404 page."""
    rec = table.get(ident)
    if rec is None or rec.service_id != svc.service_id:
        raise PageError(404, f"This {what} does not exist.")
    return rec
