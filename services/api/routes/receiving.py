"""Received mail (docs/receiving.md): Resend's ``/emails/receiving`` paths with a
full-access API key, the same under ``/api/email/services/{id}/emails/receiving`` with the
admin token, the signed attachment download, and the routing rules
(``/api/email/services/{id}/receiving-rules``). The HTTP doors of
services/api/manage/receiving.py and receiving_rules.py.

A router of its own, included before the send routes: ``/emails/receiving`` must not be
read as ``GET /emails/{email_id}``."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from services.api.auth import ServiceCaller, full_access_key, owned_service, runtime
from services.api.context import ApiContext
from services.api.errors import unless_refused
from services.api.manage import receiving as manage
from services.api.manage import receiving_rules as rules
from shared import events as ev

router = APIRouter(tags=["receiving"])
ADMIN = "/api/email/services/{service_id}/emails/receiving"
LIMIT = Query(20, description="At most 100.")
CURSOR = Query(None, max_length=64, description="A received email's id (Resend's cursor).")


async def _caller_service(caller: ServiceCaller = Depends(full_access_key)) -> ev.ServiceSaved:
    return caller.service


@router.get("/emails/receiving")
async def list_received(limit: int = LIMIT, after: str | None = CURSOR, before: str | None = CURSOR,
                        svc: ev.ServiceSaved = Depends(_caller_service), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Received emails of the key's service, newest first (`limit`, `after`, `before`, `has_more`)."""
    return unless_refused(await manage.list_received(rt, svc, limit, after, before))


@router.get("/emails/receiving/{email_id}")
async def get_received(email_id: str, svc: ev.ServiceSaved = Depends(_caller_service),
                       rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """One received email: headers, `html`, `text`, attachments, threading and SPF/DKIM/DMARC verdicts."""
    return unless_refused(await manage.find_received(rt, svc, email_id))


@router.get("/emails/receiving/{email_id}/attachments")
async def list_attachments(email_id: str, svc: ev.ServiceSaved = Depends(_caller_service),
                           rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """The attachments, each with a signed `download_url` that expires at `expires_at`."""
    return unless_refused(await manage.list_attachments(rt, svc, email_id))


@router.get("/emails/receiving/{email_id}/attachments/{attachment_id}")
async def get_attachment(email_id: str, attachment_id: str, svc: ev.ServiceSaved = Depends(_caller_service),
                         rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.find_attachment(rt, svc, email_id, attachment_id))


@router.get("/emails/receiving/{email_id}/attachments/{attachment_id}/download")
async def download(email_id: str, attachment_id: str, service: str = Query(..., max_length=64),
                   expires: int = Query(...), signature: str = Query(..., max_length=128),
                   rt: ApiContext = Depends(runtime)) -> Response:
    """The attachment's bytes, for a signed, unexpired link (no credential: the link is it).
    Served as a download that the browser never renders in Postline's origin."""
    meta, data = unless_refused(await manage.download(rt, service, email_id, attachment_id, expires, signature))
    name = (meta.get("filename") or attachment_id).replace('"', "").replace("\\", "")
    return Response(data, media_type=meta.get("content_type") or "application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{name.encode("ascii", "replace").decode()}"',
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox", "Cache-Control": "private, no-store"})


@router.get(ADMIN)
async def admin_list_received(limit: int = LIMIT, after: str | None = CURSOR, before: str | None = CURSOR,
                              svc: ev.ServiceSaved = Depends(owned_service),
                              rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.list_received(rt, svc, limit, after, before))


@router.get(ADMIN + "/{email_id}")
async def admin_get_received(email_id: str, svc: ev.ServiceSaved = Depends(owned_service),
                             rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.find_received(rt, svc, email_id))


@router.get(ADMIN + "/{email_id}/attachments")
async def admin_list_attachments(email_id: str, svc: ev.ServiceSaved = Depends(owned_service),
                                 rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.list_attachments(rt, svc, email_id))


@router.get(ADMIN + "/{email_id}/attachments/{attachment_id}")
async def admin_get_attachment(email_id: str, attachment_id: str, svc: ev.ServiceSaved = Depends(owned_service),
                               rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return unless_refused(await manage.find_attachment(rt, svc, email_id, attachment_id))


RULES = "/api/email/services/{service_id}/receiving-rules"


async def owned_rule(rule_id: str, svc: ev.ServiceSaved = Depends(owned_service),
                     rt: ApiContext = Depends(runtime)) -> ev.ReceivingRuleSaved:
    return unless_refused(rules.find_rule(rt, svc, rule_id))


@router.post(RULES, status_code=201)
async def create_rule(body: rules.RuleCreate, svc: ev.ServiceSaved = Depends(owned_service),
                      rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """Route mail to matching addresses to some webhooks and/or forward it (docs/receiving.md)."""
    return unless_refused(await rules.create_rule(rt, svc, body))


@router.get(RULES)
async def list_rules(svc: ev.ServiceSaved = Depends(owned_service), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    return {"data": rules.list_rules(rt, svc)}


@router.get(RULES + "/{rule_id}")
async def get_rule(rule: ev.ReceivingRuleSaved = Depends(owned_rule)) -> dict[str, Any]:
    return rules.rule_view(rule)


@router.delete(RULES + "/{rule_id}", status_code=204)
async def delete_rule(rule: ev.ReceivingRuleSaved = Depends(owned_rule), rt: ApiContext = Depends(runtime)) -> None:
    unless_refused(await rules.delete_rule(rt, rule))
