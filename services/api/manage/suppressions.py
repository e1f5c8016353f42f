"""The suppression list of a service: recipients never sent to again. Hard bounces and
complaints add entries automatically (relay, inbound); people add and remove them here."""
from __future__ import annotations

from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.api.manage import deleted
from services.api.refusal import Refusal
from services.api.validation_errors import first_error
from shared import events as ev
from shared.addresses import AddressError, parse_mailbox
from services.api.context import ApiContext


Reason = Literal["manual", "hard_bounce", "complaint", "unsubscribe"]  # SuppressionCreate's pattern


class SuppressionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(examples=["bounced@example.com"])
    reason: str = Field("manual", pattern="^(manual|hard_bounce|complaint|unsubscribe)$")  # the pattern's words name the field in errors

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        try:
            return parse_mailbox(v)[1].lower()
        except AddressError as exc:
            raise ValueError(str(exc)) from None


def parse(email: str, reason: str = "manual") -> SuppressionCreate | Refusal:
    """The entry to add for ``email``, or a 400 refusal naming ``email``."""
    try:
        return SuppressionCreate(email=email, reason=reason)
    except ValidationError as exc:
        return Refusal(400, first_error(exc.errors()))


def view(s: ev.SuppressionSaved) -> dict[str, Any]:
    return {"email": s.email, "reason": s.reason, "detail": s.detail, "source_email_id": s.source_email_id,
            "created_at": s.created_at.isoformat()}


def list_all(rt: ApiContext, svc: ev.ServiceSaved) -> list[dict[str, Any]]:
    """Newest first."""
    return [view(s) for s in rt.control.state.suppressions_of(svc.service_id)]


async def add(rt: ApiContext, svc: ev.ServiceSaved, body: SuppressionCreate) -> dict[str, Any]:
    rec = ev.SuppressionSaved(workspace_id=svc.workspace_id, service_id=svc.service_id, email=body.email,
                              reason=cast(Reason, body.reason), created_at=ev.utcnow())
    await rt.control.save(rec)
    return view(rec)


def find(rt: ApiContext, svc: ev.ServiceSaved, email: str) -> ev.SuppressionSaved | Refusal:
    """The entry of ``email`` (any spelling of the address); 400 for a bad address, 404 when
    it is not suppressed."""
    try:
        normal = parse_mailbox(email)[1].lower()
    except AddressError as exc:
        return Refusal(400, f"email: {exc}")
    rec = rt.control.state.suppression(svc.service_id, normal)
    return rec if rec is not None else Refusal(404, f"{email} is not suppressed")


async def remove(rt: ApiContext, svc: ev.ServiceSaved, email: str) -> Refusal | None:
    found = find(rt, svc, email)
    return found if isinstance(found, Refusal) else await deleted(rt, found)
