"""Event → ClickHouse row mapping (the columns of docs/analytics.md)."""
from __future__ import annotations

import json
from datetime import datetime

from shared import events as ev


def _ts(t: datetime) -> str:
    """``YYYY-MM-DD hh:mm:ss.mmm`` (ClickHouse's DateTime64(3) text; the times are UTC)."""
    return t.isoformat(" ", "milliseconds")[:23]


def event_row(e: ev.LifecycleEvent | ev.EmailReceived) -> dict:
    """``email.received`` rows carry the received email's id and no recipient or tags."""
    f = e.__dict__  # the fields this event type has: a missing one reads as None, without pydantic's AttributeError
    return {
        "event_id": e.id, "type": e.type, "time": _ts(e.time), "workspace_id": e.workspace_id,
        "service_id": e.service_id or "", "email_id": e.email_id, "recipient": f.get("recipient") or "",
        "tags": list(f.get("tags") or []), "smtp_code": f.get("smtp_code") or 0,
        "reason": f.get("reason") or f.get("bounce_type") or "",
        "template_id": f.get("template_id") or "", "payload": e.model_dump_json(by_alias=True),
        **insight_columns(e),
    }


def insight_columns(e: ev.LifecycleEvent | ev.EmailReceived) -> dict:
    """The delivery-path columns grouped stats and latency read (docs/analytics.md): ``''``
    where the event does not carry it; ``tls`` on deliveries is the certificate check
    (``plaintext`` without TLS); ``latency_ms`` queued→outcome, -1 when unknown."""
    f = e.__dict__
    rcpt = f.get("recipient") or ""
    tls = ""
    if isinstance(e, ev.Delivered):
        tls = e.tls.verified if e.tls else "plaintext"
    queued_at = f.get("queued_at")
    return {"provider": f.get("provider") or "", "recipient_domain": rcpt.rpartition("@")[2].lower(),
            "bounce_class": f.get("bounce_class") or "", "source_ip": f.get("source_ip") or "",
            "tls": tls, "smtp_reply": f.get("smtp_reply") or "",
            "latency_ms": int((e.time - queued_at).total_seconds() * 1000) if queued_at else -1}


def message_row(r: ev.SendRequested) -> dict:
    # the message summary, plus what the message log shows of headers and attachments
    summary = {**ev.message_summary(r), "headers": r.headers,
               "attachments": [{"filename": a.filename, "content_type": a.content_type} for a in r.attachments]}

    return {
        "email_id": r.email_id, "time": _ts(r.time), "workspace_id": r.workspace_id, "service_id": r.service_id or "",
        "mode": r.mode, "from_addr": r.from_, "subject": r.subject, "to_addrs": r.to, "cc_addrs": r.cc,
        "bcc_addrs": r.bcc, "tags": r.tags, "template_id": r.template_id or "", "payload": json.dumps(summary),
    }


def attempt_row(a: ev.WebhookAttempted) -> dict:
    return {"attempt_id": a.id, "time": _ts(a.time), "workspace_id": a.workspace_id, "service_id": a.service_id or "",
            "webhook_id": a.webhook_id, "event_id": a.event_id, "event_type": a.event_type, "attempt": a.attempt,
            "status_code": a.status_code or 0, "latency_ms": a.latency_ms, "outcome": a.outcome,
            "error": a.error or ""}
