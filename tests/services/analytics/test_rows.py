"""Events → ClickHouse rows (services/analytics/rows.py): each column from the field the
event type has, and the empty value of its type where it has none."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from services.analytics.rows import event_row
from shared import events as ev

QUEUED = datetime(2026, 12, 7, 4, 5, 6, 789_123, tzinfo=timezone.utc)
COMMON = {"workspace_id": "w", "service_id": "s", "email_id": "e1", "recipient": "Ann@Example.COM", "tags": ["t"]}


def test_a_bounce_row_reads_every_outcome_column():
    bounced = ev.Bounced(**COMMON, time=QUEUED + timedelta(seconds=2.5), smtp_code=550, smtp_reply="550 5.1.1 no such user",
                         provider="gmail", source_ip="192.0.2.7", queued_at=QUEUED, bounce_type="hard",
                         bounce_class="invalid_recipient", template_id="tpl")
    row = event_row(bounced)
    assert row["time"] == "2026-12-07 04:05:09.289"
    assert (row["type"], row["recipient"], row["recipient_domain"], row["tags"]) == (
        "bounced", "Ann@Example.COM", "example.com", ["t"])
    assert (row["smtp_code"], row["smtp_reply"], row["reason"], row["bounce_class"]) == (
        550, "550 5.1.1 no such user", "hard", "invalid_recipient")
    assert (row["provider"], row["source_ip"], row["template_id"], row["latency_ms"], row["tls"]) == (
        "gmail", "192.0.2.7", "tpl", 2500, "")
    assert json.loads(row["payload"])["id"] == bounced.id


def test_fields_an_event_type_lacks_are_empty():
    row = event_row(ev.Sent(**COMMON))
    assert (row["smtp_code"], row["reason"], row["bounce_class"], row["provider"], row["latency_ms"]) == (0, "", "", "", -1)
    failed = event_row(ev.Failed(**COMMON, reason="too many attempts"))
    assert failed["reason"] == "too many attempts"
    assert event_row(ev.Delivered(**COMMON))["tls"] == "plaintext"  # a session without TLS
    received = event_row(ev.EmailReceived(workspace_id="w", service_id="s", email_id="r1", **{"from": "x@y.test"}))
    assert (received["recipient"], received["tags"], received["recipient_domain"]) == ("", [], "")
