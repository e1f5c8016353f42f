"""Postline's domains in Resend's shapes: ``{object: "domain", id, name, status, created_at,
region, records: [{record, name, type, ttl, status, value, priority?}]}``, and what Resend's
create and update bodies may carry.

A domain's ``status``: ``verified``; ``not_started`` until the first check; else ``pending``
(the records were looked up and are not all there yet: publish them and verify again). A
record's ``status`` is its last check's: ``verified`` (found), ``failed`` (mismatch),
``temporary_failure`` (the lookup failed), ``not_started`` (missing or never checked)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.api.refusal import Refusal
from services.api import domains as dom
from shared import events as ev
from shared.settings import Settings

REGION = "local"  # Postline sends from where it runs: Resend's regions have no meaning here
RECORD_STATUS = {"found": "verified", "mismatch": "failed", "error": "temporary_failure", "missing": "not_started"}


# Resend domain options Postline does not offer per domain, and what to do instead
NOT_PER_DOMAIN = {
    "custom_return_path": "not offered: the return path is Postline's VERP bounce host",
    "open_tracking": "not per domain in Postline: PATCH /api/email/services/{id} {\"track_opens\": true}",
    "click_tracking": "not per domain in Postline: PATCH /api/email/services/{id} {\"track_clicks\": true}",
    "tls": "not per domain in Postline: it uses STARTTLS whenever the receiving server offers it",
    "capabilities": "not offered: Postline domains send; receiving is configured apart",
}
HARMLESS = (None, False, "opportunistic")  # what Postline does anyway


class ResendDomainCreate(BaseModel):
    """Resend's create body. ``region`` is accepted and ignored; the ``NOT_PER_DOMAIN``
    options are refused naming the field (``unoffered``) rather than silently not applied."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=3, max_length=253, examples=["acme.test"])
    region: str | None = Field(None, max_length=32)
    tracking_subdomain: str | None = Field(None, max_length=63, examples=["links"])
    custom_return_path: Any = None
    open_tracking: Any = None
    click_tracking: Any = None
    tls: Any = None
    capabilities: Any = None


class ResendDomainUpdate(BaseModel):
    """Resend's update body: ``tracking_subdomain`` (null removes it); the others as in create."""

    model_config = ConfigDict(extra="ignore")  # Resend's SDKs repeat the id in the body
    tracking_subdomain: str | None = Field(None, max_length=63)
    open_tracking: Any = None
    click_tracking: Any = None
    tls: Any = None
    capabilities: Any = None


def unoffered(body: BaseModel) -> Refusal | None:
    """422 naming the first option Postline does not offer per domain that the body sets."""
    for name, instead in NOT_PER_DOMAIN.items():
        if getattr(body, name, None) not in HARMLESS:
            return Refusal(422, instead, name)
    return None


def tracking_host(subdomain: str | None, domain: str) -> str | None:
    return f"{subdomain}.{domain}" if subdomain else None


def records(d: ev.DomainSaved, settings: Settings) -> list[dict[str, Any]]:
    """The records to publish with their last check's status (Resend's record shape)."""
    checked = {(c["record"], c["name"]): c["status"] for c in (d.last_check or {}).get("records", [])}
    out = []
    for r in dom.records(d, settings):
        value, priority = r["value"], None
        if r["type"] == "MX":
            pref, _, value = value.partition(" ")
            priority = int(pref)
        status = RECORD_STATUS.get(checked.get((r["record"], r["name"]), "missing"), "not_started")
        out.append({"record": r["record"], "name": r["name"], "type": r["type"], "ttl": "Auto", "status": status,
                    "value": value, **({"priority": priority} if priority is not None else {})})
    return out


def status(d: ev.DomainSaved) -> str:
    return "verified" if d.verified else "pending" if d.last_check else "not_started"


def domain_view(d: ev.DomainSaved, settings: Settings) -> dict[str, Any]:
    subdomain = d.tracking_host.removesuffix("." + d.domain) if d.tracking_host else None
    return {"object": "domain", "id": d.domain_id, "name": d.domain, "status": status(d),
            "created_at": d.created_at.isoformat(), "region": REGION, "records": records(d, settings),
            **({"tracking_subdomain": subdomain} if subdomain else {})}


def listed(d: ev.DomainSaved) -> dict[str, Any]:
    return {"id": d.domain_id, "name": d.domain, "status": status(d), "created_at": d.created_at.isoformat(),
            "region": REGION}
