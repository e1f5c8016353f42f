"""Received mail of a service: list, one message, its attachments with signed download URLs
(the use cases behind Resend's ``/emails/receiving`` paths, the admin paths and the
dashboard). Every lookup is scoped by the service; another service's id is a 404.

Download URLs are signed (HMAC-SHA256 under a key derived from POSTLINE_SECRET_KEY) over
the service, message, attachment and expiry, and expire after POSTLINE_RECEIVING_LINK_TTL
seconds: they work without a credential, as Resend's do, for as long as they are valid."""
from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime, timezone
from typing import Any

from services.api.context import ApiContext
from services.api.refusal import Refusal
from shared import events as ev
from shared.crypto import derive_key
from shared.store import received
from shared.store.port import AnalyticsStore, StoreError

MAX_LIMIT = 100
LIST_FIELDS = ("id", "object", "created_at", "from", "to", "cc", "bcc", "reply_to", "received_for", "subject",
               "message_id", "attachments")  # Resend's list item: no bodies, no headers


def _store(rt: ApiContext) -> AnalyticsStore | Refusal:
    return rt.store if rt.store is not None else Refusal(503, "received mail is not available: no analytics store")


def _unavailable(exc: StoreError) -> Refusal:
    return Refusal(503, "the analytics store is unavailable; try again", retry_after=1, cause=exc)


async def list_received(rt: ApiContext, svc: ev.ServiceSaved, limit: int, after: str | None,
                        before: str | None) -> dict[str, Any] | Refusal:
    """Newest first, Resend's list: ``{"object": "list", "has_more", "data"}``."""
    if not 1 <= limit <= MAX_LIMIT:
        return Refusal(400, f"must be between 1 and {MAX_LIMIT}", field="limit")
    if after and before:
        return Refusal(400, "give after or before, not both", field="after")
    store = _store(rt)
    if isinstance(store, Refusal):
        return store
    try:
        found = await received.page(store, svc.service_id, limit, after, before)
    except StoreError as exc:
        return _unavailable(exc)
    if found is None:
        return Refusal(400, f"{after or before} is not a received email of this service", field="after" if after else "before")
    rows, more = found
    return {"object": "list", "has_more": more, "data": [{k: m.get(k) for k in LIST_FIELDS} for m in rows]}


async def find_received(rt: ApiContext, svc: ev.ServiceSaved, email_id: str) -> dict[str, Any] | Refusal:
    """The whole message (headers, ``html``, ``text``, verdicts, threading); 404 when not the
    service's, or expired."""
    store = _store(rt)
    if isinstance(store, Refusal):
        return store
    try:
        message = await received.find(store, svc.service_id, email_id)
    except StoreError as exc:
        return _unavailable(exc)
    if message is None:
        return Refusal(404, f"received email {email_id} not found")
    return {k: v for k, v in message.items() if k not in ("workspace_id",)}


async def list_attachments(rt: ApiContext, svc: ev.ServiceSaved, email_id: str) -> dict[str, Any] | Refusal:
    message = await find_received(rt, svc, email_id)
    if isinstance(message, Refusal):
        return message
    links = [with_link(rt, svc, email_id, a) for a in message["attachments"]]
    return {"object": "list", "has_more": False, "data": links}


async def attachment_meta(rt: ApiContext, svc: ev.ServiceSaved, email_id: str,
                          attachment_id: str) -> dict[str, Any] | Refusal:
    """The metadata of one attachment of a received email; 404 when either is not there."""
    message = await find_received(rt, svc, email_id)
    if isinstance(message, Refusal):
        return message
    meta: dict[str, Any] | None = next((a for a in message["attachments"] if a["id"] == attachment_id), None)
    return meta if meta is not None else Refusal(404, f"attachment {attachment_id} not found")


async def find_attachment(rt: ApiContext, svc: ev.ServiceSaved, email_id: str, attachment_id: str) -> dict[str, Any] | Refusal:
    meta = await attachment_meta(rt, svc, email_id, attachment_id)
    return meta if isinstance(meta, Refusal) else {"object": "attachment", **with_link(rt, svc, email_id, meta)}


def with_link(rt: ApiContext, svc: ev.ServiceSaved, email_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    """An attachment's metadata with its signed ``download_url`` and ``expires_at``."""
    expires = int(time.time()) + rt.settings.receiving_link_ttl
    sig = signature(rt.settings.master_key, svc.service_id, email_id, meta["id"], expires)
    url = (f"{rt.settings.base_url}/emails/receiving/{email_id}/attachments/{meta['id']}/download"
           f"?service={svc.service_id}&expires={expires}&signature={sig}")
    return {**meta, "download_url": url, "expires_at": datetime.fromtimestamp(expires, timezone.utc).isoformat()}


def signature(master_key: bytes, service_id: str, email_id: str, attachment_id: str, expires: int) -> str:
    key = derive_key(master_key, "received-attachment-links")
    return hmac.new(key, f"{service_id}|{email_id}|{attachment_id}|{expires}".encode(), hashlib.sha256).hexdigest()


async def download(rt: ApiContext, service_id: str, email_id: str, attachment_id: str, expires: int,
                   sig: str) -> tuple[dict[str, Any], bytes] | Refusal:
    """An attachment's metadata and bytes for a signed link; 404 for a bad or expired
    signature (it never says which), as for an attachment that is not there."""
    good = signature(rt.settings.master_key, service_id, email_id, attachment_id, expires)
    svc = rt.control.state.services.get(service_id)
    if not hmac.compare_digest(good.encode(), sig.encode()) or expires < time.time() or svc is None or svc.deleted:
        return Refusal(404, "this download link is not valid (or has expired)")
    meta = await attachment_meta(rt, svc, email_id, attachment_id)
    if isinstance(meta, Refusal):
        return meta
    store = _store(rt)
    if isinstance(store, Refusal):
        return store
    try:
        data = await received.attachment(store, service_id, email_id, attachment_id)
    except StoreError as exc:
        return _unavailable(exc)
    if data is None:
        return Refusal(404, f"attachment {attachment_id} not found")
    return meta, data
