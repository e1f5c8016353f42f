"""Sending domains: add (a DKIM key is generated), the DNS records to publish, the tracking
host, verify now (per-record result), DKIM rotation (services/api/dkim_rotation.py), remove."""
from __future__ import annotations

from typing import Any

from services.api import dkim_rotation as rotation
from services.api import domains as dom
from services.api.manage import changed, deleted
from services.api.refusal import Refusal
from shared import events as ev
from shared.dkim_keys import generate
from services.api.context import ApiContext
from shared.settings import Settings


def domain_view(d: ev.DomainSaved, settings: Settings) -> dict[str, Any]:
    return {"id": d.domain_id, "domain": d.domain, "status": "verified" if d.verified else "pending",
            "verified": d.verified, "verified_at": d.verified_at.isoformat() if d.verified_at else None,
            "created_at": d.created_at.isoformat(), "records": dom.records(d, settings),
            "tracking_host": d.tracking_host, "receiving": d.receiving, "last_check": d.last_check,
            "return_path": d.return_path or "bounces", "dkim_rotation_days": d.dkim_rotation_days,
            "dkim_rotated_at": d.dkim_rotated_at.isoformat() if d.dkim_rotated_at else None,
            "retiring_until": d.retiring_until.isoformat() if d.retiring_dkim and d.retiring_until else None}


def list_domains(rt: ApiContext, svc: ev.ServiceSaved) -> list[dict[str, Any]]:
    return [domain_view(d, rt.settings) for d in rt.control.state.domains_of(svc.service_id)]


def find_domain(rt: ApiContext, svc: ev.ServiceSaved, domain_id: str) -> ev.DomainSaved | Refusal:
    """``svc``'s domain ``domain_id``; 404 for another service's or none."""
    d = rt.control.state.domains.get(domain_id)
    if d is None or d.service_id != svc.service_id:
        return Refusal(404, f"domain {domain_id} not found")
    return d


def tracking_host(value: str | None, domain: str) -> str | None | Refusal:
    """The normalised tracking host (None: none), or a 400 refusal."""
    try:
        return dom.normalise_tracking_host(value, domain) if value else None
    except ValueError as exc:
        return Refusal(400, str(exc))


def return_path(value: str | None, domain: str) -> str | None | Refusal:
    """The normalised return-path label (None: the default ``bounces``), or a 400 refusal."""
    try:
        return dom.normalise_return_path(value, domain) if value else None
    except ValueError as exc:
        return Refusal(400, str(exc), field="return_path")


async def add_domain(rt: ApiContext, svc: ev.ServiceSaved, domain: str, host: str | None,
                     bounce_label: str | None = None) -> dict[str, Any] | Refusal:
    """400 for a name that is not a domain (or a bad tracking host or return path), 409 when already added."""
    name = dom.normalise_domain(domain)
    if name is None:
        return Refusal(400, f"domain: {domain!r} is not a valid domain name")
    if any(d.domain == name for d in rt.control.state.domains_of(svc.service_id)):
        return Refusal(409, f"domain: {name} is already added to this service")
    tracking = tracking_host(host, name)
    if isinstance(tracking, Refusal):
        return tracking
    label = return_path(bounce_label, name)
    if isinstance(label, Refusal):
        return label
    domain_id = ev.new_id()
    d = ev.DomainSaved(workspace_id=svc.workspace_id, service_id=svc.service_id, domain_id=domain_id, domain=name,
                       tracking_host=tracking, return_path=label, created_at=ev.utcnow(),
                       **generate(rt.settings.master_key, domain_id))
    await rt.control.save(d)
    return domain_view(d, rt.settings)


async def _viewed(rt: ApiContext, d: ev.DomainSaved, **fields: Any) -> dict[str, Any] | Refusal:
    """``d`` with ``fields`` changed, as the API shows it (or the change's refusal)."""
    updated = await changed(rt, d, **fields)
    return updated if isinstance(updated, Refusal) else domain_view(updated, rt.settings)


async def set_tracking_host(rt: ApiContext, d: ev.DomainSaved, host: str | None) -> dict[str, Any] | Refusal:
    """Set (or, with None, remove) the domain's tracking host; its CNAME joins the records."""
    tracking = tracking_host(host, d.domain)
    if isinstance(tracking, Refusal):
        return tracking
    return await _viewed(rt, d, tracking_host=tracking)


async def set_receiving(rt: ApiContext, d: ev.DomainSaved, receiving: bool) -> dict[str, Any] | Refusal:
    """Turn receiving on (the MX record joins the records to publish) or off. 409 when
    another service already receives for the same domain name: mail for a domain goes to
    one service only. Mail arrives only once the domain is verified (``receiving_domain``):
    a service cannot take another's mail, or block it, by adding its domain name unverified."""
    if receiving and not d.receiving:
        holder = rt.control.state.receiving_domain(d.domain)
        if holder is not None and holder.domain_id != d.domain_id:
            return Refusal(409, f"another service already receives mail for {d.domain}", field="receiving")
    return await _viewed(rt, d, receiving=receiving)


async def verify_domain(rt: ApiContext, d: ev.DomainSaved) -> dict[str, Any] | Refusal:
    """Look the records up now: the domain's view with each record's result (``checks``)."""
    verified, checks = await dom.verify(d, rt.settings)
    now = ev.utcnow()
    promote = rotation.promotion(d, checks, now)  # a pending DKIM set DNS now shows: sign with it
    if promote:
        verified, checks = rotation.promoted_checks(checks)
    updated = await changed(rt, d, verified=verified, verified_at=(d.verified_at or now) if verified else None,
                            last_check={"at": now.isoformat(), "records": checks}, **promote)
    return updated if isinstance(updated, Refusal) else {**domain_view(updated, rt.settings), "checks": checks}


async def rotate_dkim(rt: ApiContext, d: ev.DomainSaved) -> dict[str, Any] | Refusal:
    """Publish a new DKIM key set as pending (409 while one is pending, or the last one replaced
    is still retiring)."""
    if why := rotation.rotatable(d, ev.utcnow()):
        return Refusal(409, why)
    return await _viewed(rt, d, **rotation.pending(rt.settings.master_key, d))


async def set_return_path(rt: ApiContext, d: ev.DomainSaved, value: str | None) -> dict[str, Any] | Refusal:
    """Move the return path (None: back to ``bounces``); its MX and SPF records change with it."""
    label = return_path(value, d.domain)
    if isinstance(label, Refusal):
        return label
    return await _viewed(rt, d, return_path=label)


async def set_rotation_days(rt: ApiContext, d: ev.DomainSaved, days: int | None) -> dict[str, Any] | Refusal:
    return await _viewed(rt, d, dkim_rotation_days=days)


async def delete_domain(rt: ApiContext, d: ev.DomainSaved) -> Refusal | None:
    return await deleted(rt, d)
