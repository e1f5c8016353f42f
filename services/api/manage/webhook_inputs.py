"""What a webhook endpoint is created, changed and replayed with (the API's request bodies,
also what the dashboard's forms are read into)."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared import events as ev
from shared.ssrf import check_url_shape


def _events(v: list[str] | None) -> list[str] | None:
    if v is None:
        return v
    if not v:
        raise ValueError("at least one event type")
    bad = [e for e in v if e not in ev.WEBHOOK_TYPES]
    if bad:
        raise ValueError(f"unknown event type {bad[0]!r}; one of {', '.join(ev.WEBHOOK_TYPES)}")
    return sorted(set(v))


def _url(v: str | None) -> str | None:
    if v is not None:
        if len(v) > 2000:
            raise ValueError("at most 2000 characters")
        check_url_shape(v)
    return v


class _WebhookChecks(BaseModel):
    """The url and events rules, shared by create and update."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("url", check_fields=False)
    @classmethod
    def check_url(cls, v: str | None) -> str | None:
        return _url(v)

    @field_validator("events", check_fields=False)
    @classmethod
    def check_events(cls, v: list[str] | None) -> list[str] | None:
        return _events(v)


class WebhookCreate(_WebhookChecks):
    url: str = Field(examples=["https://example.com/webhooks/email"])
    events: list[str] = Field(examples=[["delivered", "bounced", "complained"]])


class WebhookUpdate(_WebhookChecks):
    url: str | None = None
    events: list[str] | None = None
    status: str | None = Field(None, pattern="^(enabled|disabled)$")
    rotate_secret: bool = False


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: str | None = Field(None, max_length=64)
    since: datetime | None = None
    until: datetime | None = None

    @model_validator(mode="after")
    def _one(self) -> ReplayRequest:
        if not self.event_id and not self.since:
            raise ValueError("event_id: give event_id, or since (and optionally until)")
        return self


class WebhookView(BaseModel):
    id: str
    url: str
    events: list[str]
    status: str
    disabled_reason: str | None
    created_at: str
    secret: str | None = Field(None, description="Only in the response that created or rotated it.")
