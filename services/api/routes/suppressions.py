"""The suppression list of a service (docs/delivery.md): recipients never sent to again.

Hard bounces and complaints add entries automatically (relay/inbound); users add and
remove entries here. State is event-sourced on the control topic."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.api.auth import owned_service, runtime
from shared import events as ev
from services.api.schemas import SuppressionList, SuppressionView
from shared.addresses import AddressError, parse_mailbox

router = APIRouter(prefix="/api/email/services/{service_id}/suppressions", tags=["suppressions"])


class SuppressionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(examples=["bounced@example.com"])
    reason: str = Field("manual", pattern="^(manual|hard_bounce|complaint|unsubscribe)$")

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        try:
            return parse_mailbox(v)[1].lower()
        except AddressError as exc:
            raise ValueError(str(exc)) from None


def view(s: ev.SuppressionSaved) -> dict:
    return {"email": s.email, "reason": s.reason, "detail": s.detail, "source_email_id": s.source_email_id,
            "created_at": s.created_at.isoformat()}


def _normal(email: str) -> str:
    try:
        return parse_mailbox(email)[1].lower()
    except AddressError as exc:
        raise HTTPException(400, f"email: {exc}") from None


@router.get("", response_model=SuppressionList)
async def list_suppressions(limit: int = Query(50, ge=1, le=500), cursor: str | None = Query(None, max_length=320),
                            svc=Depends(owned_service), rt=Depends(runtime)):
    """Newest first; ``next_cursor`` pages on (an email address is the cursor)."""
    items = [view(s) for s in rt.control.state.suppressions_of(svc.service_id)]
    if cursor:
        idx = next((i for i, s in enumerate(items) if s["email"] == cursor.lower()), None)
        items = items[idx + 1:] if idx is not None else []
    page = items[:limit]
    return {"data": page, "next_cursor": page[-1]["email"] if len(items) > limit else None}


@router.post("", status_code=201, response_model=SuppressionView)
async def add_suppression(body: SuppressionCreate, svc=Depends(owned_service), rt=Depends(runtime)):
    rec = ev.SuppressionSaved(workspace_id=svc.workspace_id, service_id=svc.service_id, email=body.email,
                              reason=body.reason, created_at=ev.utcnow())
    await rt.control.save(rec)
    return view(rec)


@router.get("/{email}", response_model=SuppressionView)
async def get_suppression(email: str, svc=Depends(owned_service), rt=Depends(runtime)):
    rec = rt.control.state.suppression(svc.service_id, _normal(email))
    if rec is None:
        raise HTTPException(404, f"{email} is not suppressed")
    return view(rec)


@router.delete("/{email}", status_code=204)
async def remove_suppression(email: str, svc=Depends(owned_service), rt=Depends(runtime)):
    rec = rt.control.state.suppression(svc.service_id, _normal(email))
    if rec is None:
        raise HTTPException(404, f"{email} is not suppressed")
    await rt.control.change(rec, deleted=True)
