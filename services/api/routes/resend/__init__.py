"""Resend's management paths for a service's full-access API key (docs/compatibility.md):
``/api-keys``, ``/domains``, ``/suppressions``, ``/webhooks`` (with their events, attempts
and replay) and ``GET /emails``. Each is a thin adapter over services/api/manage/ (shared
with the admin routes and the dashboard) answering in Resend's shapes; a sending-only key
gets 403 ``restricted_api_key`` (``auth.full_access_key``).

Adding another Resend path (templates, receiving, …): a router of its own, included by the
app like any other, in any order (``app.include_router``) with ``Depends(full_access_key)``
on management routes. Nothing here catches paths: Resend paths Postline does not offer are
answered by a 404 fallback that sees only unrouted requests (services/api/not_offered.py) —
remove a path's pattern there when it becomes offered."""
from __future__ import annotations

from fastapi import APIRouter

from services.api.routes.resend import api_keys, domains, emails_list, suppressions, webhook_events, webhooks

router = APIRouter()
for module in (api_keys, domains, suppressions, webhooks, webhook_events, emails_list):
    router.include_router(module.router)
