"""Find one email of a service and derive its state: the lookup behind ``GET /emails/{id}``
(``email_record``, also the dashboard's message page) and the schedule changes (cancel, reschedule).

The record comes from the analytics read model, or from this API process's memory of
what it accepted (so a GET right after the POST answers before analytics has the row), or
(embedded log) from the request in the log itself, when another API process of `postline
all` accepted it. On Kafka, where the log has no lookup by key, a request another replica
accepted a moment ago reaches this one through analytics only: a miss waits (at most
``ANALYTICS_WAIT``) until analytics has loaded every request appended before the GET
arrived, then reads it again — so a GET right after the POST finds it on any replica."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from datetime import datetime

from services.api.refusal import Refusal
from services.api.sending import summary, tracking_view
from shared import events as ev
from services.api.context import ApiContext
from shared.addresses import domain_of, message_id, split_bare
from shared.log.port import LogError
from shared.store import queries

ANALYTICS_WAIT = 3.0  # seconds a miss waits for analytics to load what was appended before it (Kafka)
ANALYTICS_STILL = 1.5  # ... unless analytics committed nothing new for this long (it loads about once a second)

# Postline event type → Resend's event name: the webhook management API's names
# (routes/resend/webhook_shapes.py) and, without ``email.``, an email's ``last_event``
# (``resend_last_event``). canceled and unsubscribed are Postline's own events; received
# mail has Resend's name in both.
RESEND_NAMES = {"email.received": "email.received", "sent": "email.sent", "delivered": "email.delivered",
                "deferred": "email.delivery_delayed", "bounced": "email.bounced", "failed": "email.failed",
                "dropped": "email.suppressed", "complained": "email.complained", "opened": "email.opened",
                "clicked": "email.clicked", "scheduled": "email.scheduled", "canceled": "email.canceled",
                "unsubscribed": "email.unsubscribed"}


def resend_last_event(kind: str) -> str:
    """Resend's ``last_event`` for what ``queries.last_event_type`` says: ``dropped`` →
    ``suppressed``, ``deferred`` → ``delivery_delayed``; ``queued`` and the names Resend
    shares with Postline as they are."""
    return RESEND_NAMES.get(kind, kind).removeprefix("email.")


def rfc_message_id(rt: ApiContext, email_id: str, sending_domain: str | None) -> str:
    """The Message-ID header of the message: ``<id@domain>`` on its verified sending domain,
    else on the sandbox sender's, as the relay builds it (``build_message`` in
    services/relay/handler.py; the API adds the same to an SMTP submission without one).
    Fixed when the email is accepted, so known before the message is built (scheduled,
    queued) and said even when it never is (canceled, every recipient dropped). Not what
    went out if the domain lost its verification before the relay built the message (the
    relay then uses the sandbox sender's domain), nor for an SMTP submission that carried
    its own Message-ID (sent as written; the API does not keep the client's bytes)."""
    return message_id(email_id, sending_domain or domain_of(split_bare(rt.settings.sandbox_from)))


@dataclass
class Found:
    record: dict
    events: list[dict]
    response: dict = field(default_factory=dict)  # this process's send response, when it has it
    local: dict = field(default_factory=dict)     # this process's schedule changes not yet in the timeline

    @property
    def scheduled_at(self) -> str | None:
        """The due time in force: a local change, else the latest ``scheduled`` event, else
        the request's own ``scheduled_at``."""
        if "scheduled_at" in self.local:
            return self.local["scheduled_at"]
        held = [e for e in self.events if e.get("type") == "scheduled"]
        if held:
            return max(held, key=lambda e: e["time"])["scheduled_at"]
        return self.record.get("scheduled_at")

    @property
    def last_event(self) -> str:
        """Resend's ``last_event`` (its names: ``suppressed``, ``delivery_delayed``): the
        latest lifecycle event as ``queries.last_event_type`` picks it (as ``GET /emails``
        lists it); ``canceled`` as soon as this process accepted a cancel."""
        if self.local.get("canceled"):
            return "canceled"
        return resend_last_event(queries.last_event_type(self.events, bool(self.record.get("recipients")),
                                                         self.scheduled_at))

    def went_out(self) -> bool:
        return any(e.get("type") in ev.RELEASED_TYPES for e in self.events)


async def find_email(rt: ApiContext, svc: ev.ServiceSaved, email_id: str) -> Found | Refusal:
    """The email ``email_id`` of ``svc``; a 404 refusal when unknown or another service's."""
    found = await lookup_email(rt, svc, email_id)
    if found is None:
        return Refusal(404, f"email {email_id} not found")
    return found


async def lookup_email(rt: ApiContext, svc: ev.ServiceSaved, email_id: str) -> Found | None:
    """The email ``email_id`` of ``svc``; None when unknown or another service's."""
    record, events = await _stored(rt, svc, email_id)
    recent = rt.recent
    remembered = recent.get(email_id) if recent else None
    if record is None and remembered is not None:
        record = remembered[0]  # the summary RecentSends keeps
    if record is None:
        record = accepted_elsewhere(rt, email_id)
    if record is None and not rt.log.keyed_lookups and await analytics_caught_up(rt):
        record, events = await _stored(rt, svc, email_id)
    if record is None or record.get("service_id") != svc.service_id:
        return None
    local = rt.schedule_changes.get(email_id, {})
    return Found(record, events, remembered[1] if remembered else {}, local)


async def _stored(rt: ApiContext, svc: ev.ServiceSaved, email_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The record and timeline in the analytics read model; (None, []) when it has none or is down."""
    if rt.store is None:
        return None, []
    try:
        record = await queries.message(rt.store, email_id, svc.workspace_id)
        return record, await queries.timeline(rt.store, email_id, svc.workspace_id) if record else []
    except Exception:  # analytics store down: fall back to what this process remembers
        return None, []


async def analytics_caught_up(rt: ApiContext) -> bool:
    """Whether analytics has loaded every request appended before this call (its group's
    commits reach the ends read now; it commits only after its insert), waiting for it at
    most ``ANALYTICS_WAIT`` seconds — and only while it moves: analytics that loaded nothing
    for ``ANALYTICS_STILL`` seconds (stopped, its store down) is not waited for, so a 404 is
    not held up by it. False at once without a store or when the log cannot say."""
    if rt.store is None:
        return False
    from services.analytics.consumer import GROUP

    try:
        ends = await rt.log.end_offsets(ev.Topic.REQUESTS)
        start = moved = time.monotonic()
        loaded = await rt.log.committed(GROUP, ev.Topic.REQUESTS)
        while not all(loaded.get(part, 0) >= end for part, end in ends.items()):
            now = time.monotonic()
            if now - start >= ANALYTICS_WAIT or now - moved >= ANALYTICS_STILL:
                return False
            await asyncio.sleep(0.1)
            before, loaded = loaded, await rt.log.committed(GROUP, ev.Topic.REQUESTS)
            if loaded != before:
                moved = time.monotonic()
        return True
    except LogError:
        return False


def accepted_elsewhere(rt: ApiContext, email_id: str) -> dict[str, Any] | None:
    """The summary of a request another process appended (same shape as RecentSends'), read
    from the embedded log by its key; None when unknown or when the log cannot look up keys
    (Kafka: ``by_key`` finds nothing there, and the API replicas rely on analytics)."""
    for rec in rt.log.by_key(ev.Topic.REQUESTS, email_id):  # newest first: cancels and reschedules share the key
        req = ev.decode(rec.value)
        if isinstance(req, ev.SendRequested):
            return ev.message_summary(req)
    return None


async def email_record(rt: ApiContext, svc: ev.ServiceSaved, email_id: str) -> dict[str, Any] | None:
    """``GET /emails/{id}``'s body for a message of ``svc`` (None: not found, or another service's)."""
    found = await lookup_email(rt, svc, email_id)
    if found is None:
        return None
    record, events, response = found.record, found.events, found.response
    recipients = queries.recipient_states(events)
    for r in record.get("recipients", []):
        recipients.setdefault(r, {"status": "queued"})
    for d in record.get("dropped", []):
        recipients.setdefault(d["recipient"], {"status": "dropped", "reason": d["reason"]})
    return {
        "id": email_id, "status": "sent" if record.get("recipients") else "failed", "mode": record["mode"],
        "from": record["from"], "to": record["to"], "cc": record.get("cc", []), "bcc": record.get("bcc", []),
        "subject": record.get("subject", ""), "tags": record.get("tags", []), "created_at": record["time"],
        "scheduled_at": found.scheduled_at,
        "message": response.get("message") or summary(
            record.get("recipients", []), [(d["recipient"], d["reason"]) for d in record.get("dropped", [])],
            record.get("sending_domain")),
        "recipients": recipients, "events": events, "tracking": tracking_view(record),
        # what Resend's SDKs read besides the fields above (docs/compatibility.md)
        "object": "email", "last_event": found.last_event, "reply_to": record.get("reply_to", []),
        "message_id": rfc_message_id(rt, email_id, record.get("sending_domain")),
        "html": None, "text": None, "template_id": record.get("template_id"),
    }


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
