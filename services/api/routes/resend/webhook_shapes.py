"""Postline's webhooks in Resend's shapes: ``endpoint`` for ``url``, Resend's event names
(``email.delivered``) for Postline's lifecycle types (``delivered``), ``signing_secret``.

Deliveries themselves keep Postline's body (``type: "delivered"``, docs/compatibility.md):
only the management API speaks Resend's names. Postline's names are accepted too."""
from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.api.email_lookup import RESEND_NAMES  # one mapping: emails' last_event reads it too
from services.api.refusal import Refusal
from services.api.routes.resend.paging import iso
from services.api.validation_errors import first_error
from shared import events as ev

Body = TypeVar("Body", bound=BaseModel)
POSTLINE_NAMES = {v: k for k, v in RESEND_NAMES.items()}
# an attempt's outcome (services/webhooks/runner.py) → Resend's event delivery status
STATUS = {"delivered": "success", "retrying": "attempting", "failed": "failed", "disabled": "failed",
          "skipped": "failed"}


class ResendWebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint: str = Field(max_length=2000, examples=["https://example.com/webhooks/email"])
    events: list[str] = Field(max_length=64, examples=[["email.delivered", "email.bounced"]])


class ResendWebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")  # Resend's SDKs repeat the id in the body
    endpoint: str | None = Field(None, max_length=2000)
    events: list[str] | None = Field(None, max_length=64)
    status: str | None = None


def postline_events(names: list[str] | None) -> list[str] | None | Refusal:
    """Resend's (or Postline's) event names as Postline's; 422 naming an event Postline does
    not emit (contacts, domains, inboxes…)."""
    if names is None:
        return None
    out = []
    for name in names:
        if name not in POSTLINE_NAMES and name not in RESEND_NAMES:
            return Refusal(422, f"Postline does not emit {name!r}; one of {', '.join(RESEND_NAMES.values())}",
                           "events")
        out.append(POSTLINE_NAMES.get(name, name))
    return out


def postline_body(model: type[Body], **fields: Any) -> Body | Refusal:
    """Postline's body from Resend's fields; its validation errors name Resend's fields."""
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        errors = [{**e, "loc": tuple("endpoint" if part == "url" else part for part in e["loc"])} for e in exc.errors()]
        return Refusal(422, first_error(errors))


def webhook_view(w: ev.WebhookSaved) -> dict[str, Any]:
    return {"object": "webhook", "id": w.webhook_id, "created_at": w.created_at.isoformat(), "status": w.status,
            "endpoint": w.url, "events": [RESEND_NAMES.get(e, e) for e in w.events], "signing_secret": None}


def event_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["event_id"], "type": RESEND_NAMES.get(row["event_type"], row["event_type"]),
            "created_at": iso(row.get("first_at") or row["time"]), "status": STATUS.get(row["outcome"], "pending")}


def attempt_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["attempt_id"], "http_status_code": row["status_code"], "response": row["error"] or "",
            "sent_at": iso(row["time"])}
