"""Resend's ``/suppressions`` for a full-access key: the service's suppression list
(services/api/manage/suppressions.py) in Resend's shapes.

A suppression's ``id`` is derived from the service and the address (a UUID5), so every
process and replica names it alike without storing one. ``origin`` is Resend's
(``bounce``, ``complaint``, ``manual``); Postline's finer ``reason`` is given too."""
from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from services.api.auth import ServiceCaller, full_access_key, runtime
from services.api.context import ApiContext
from services.api.errors import unless_refused
from services.api.manage import suppressions as manage
from services.api.refusal import Refusal
from services.api.routes.resend.paging import Paging, envelope, page_of, paging
from shared import events as ev

router = APIRouter(prefix="/suppressions", tags=["resend: suppressions"])
NAMESPACE = uuid.UUID("5f0c3a52-5a51-4b8e-9d57-2b1a4d3c9e10")  # suppression ids: uuid5(NAMESPACE, "service:email")
ORIGIN = {"hard_bounce": "bounce", "soft_bounce": "bounce", "complaint": "complaint", "manual": "manual",
          "unsubscribe": "manual"}


class ResendSuppressionAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str


def suppression_id(s: ev.SuppressionSaved) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{s.service_id}:{s.email}"))


def listed(s: ev.SuppressionSaved) -> dict[str, Any]:
    return {"id": suppression_id(s), "email": s.email, "origin": ORIGIN.get(s.reason, "manual"), "reason": s.reason,
            "source_id": s.source_email_id, "created_at": s.created_at.isoformat()}


def find(rt: ApiContext, svc: ev.ServiceSaved, id_or_email: str) -> ev.SuppressionSaved | Refusal:
    """By address (any spelling), else by id; 404 when neither is suppressed here."""
    if "@" in id_or_email:
        return manage.find(rt, svc, id_or_email)
    found = next((s for s in rt.control.state.suppressions_of(svc.service_id) if suppression_id(s) == id_or_email), None)
    return found if found is not None else Refusal(404, f"suppression {id_or_email} not found")


@router.post("", status_code=201)
async def add(body: ResendSuppressionAdd, caller: ServiceCaller = Depends(full_access_key),
              rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Adding an address already suppressed answers the existing entry (as Resend does)."""
    parsed = unless_refused(manage.parse(body.email))
    existing = rt.control.state.suppression(caller.service.service_id, parsed.email)
    if existing is None:
        await manage.add(rt, caller.service, parsed)
        existing = unless_refused(manage.find(rt, caller.service, parsed.email))
    return {"object": "suppression", "id": suppression_id(existing)}


@router.get("")
async def list_all(origin: str | None = Query(None, pattern="^(bounce|complaint|manual)$"),
                   p: Paging = Depends(paging), caller: ServiceCaller = Depends(full_access_key),
                   rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Newest first; ``origin`` filters."""
    items = [s for s in rt.control.state.suppressions_of(caller.service.service_id)
             if origin is None or ORIGIN.get(s.reason) == origin]
    data, more = page_of(items, suppression_id, p)
    return envelope([listed(s) for s in data], more)


@router.get("/{id_or_email}")
async def get_one(id_or_email: str, caller: ServiceCaller = Depends(full_access_key),
                  rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return {"object": "suppression", **listed(unless_refused(find(rt, caller.service, id_or_email)))}


@router.delete("/{id_or_email}")
async def remove(id_or_email: str, caller: ServiceCaller = Depends(full_access_key),
                 rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    found = unless_refused(find(rt, caller.service, id_or_email))
    unless_refused(await manage.remove(rt, caller.service, found.email))
    return {"object": "suppression", "id": suppression_id(found), "deleted": True}
