"""Resend's Python SDK (PyPI ``resend``, pinned in pyproject's test extras), unchanged,
pointed at a running Postline by its base URL only (``resend.api_url``, which the SDK also
reads from ``RESEND_API_URL``)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import resend
from resend.exceptions import ResendError, ValidationError

from tests.support.postline import sink_reader, wait_verified

FROM = "Acme <hello@acme.test>"
PDF = b"%PDF-1.4\n% a tiny invoice\n"


@pytest.fixture
def sdk(sdk_world):
    resend.api_key, resend.api_url = sdk_world.key, sdk_world.url
    return sdk_world


def test_send(sdk):
    sent = resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": "Welcome (py)",
                               "html": "<p>Hello from the Python SDK</p>", "reply_to": "help@acme.test"})
    msg = sdk.mail_for(sent["id"]).message
    assert msg["Subject"] == "Welcome (py)" and msg["To"] == "ann@example.com"
    assert msg["Reply-To"] == "help@acme.test"
    assert "Hello from the Python SDK" in msg.get_body(("html",)).get_content()


def test_send_with_tags_and_attachment(sdk):
    sent = resend.Emails.send({
        "from": FROM, "to": ["bob@example.com"], "subject": "Your invoice (py)", "text": "Attached.",
        "headers": {"X-Entity-Ref-ID": "inv-1"},
        "tags": [{"name": "category", "value": "invoice_py"}],
        "attachments": [{"filename": "invoice.pdf", "content": list(PDF)}],  # the SDK's bytes-as-list form
    })
    msg = sdk.mail_for(sent["id"]).message
    assert msg["X-Entity-Ref-ID"] == "inv-1"
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "invoice.pdf" and part.get_content_type() == "application/pdf"
    assert part.get_content() == PDF
    # tags are kept as name:value: the record, stats and the message log filter on them
    assert sdk.record(sent["id"])["tags"] == ["category:invoice_py"]
    sdk.wait_record(sent["id"], lambda r: sdk.tag_count("category:invoice_py") >= 1)
    assert sdk.webhook(sent["id"], "delivered")["data"]["tags"] == ["category:invoice_py"]
    log = sdk.api.admin("GET", f"/api/email/services/{sdk.service_id}/messages", params={"tag": "category:invoice_py"})
    assert [m["id"] for m in log.json()["data"]] == [sent["id"]]


def test_batch(sdk):
    out = resend.Batch.send([
        {"from": FROM, "to": ["ann@example.com"], "subject": "Batch one (py)", "text": "1"},
        {"from": FROM, "to": ["bob@example.com"], "subject": "Batch two (py)", "text": "2"},
    ])
    ids = [item["id"] for item in out["data"]]
    assert len(ids) == 2
    assert [sdk.mail_for(i).message["Subject"] for i in ids] == ["Batch one (py)", "Batch two (py)"]


def test_get(sdk):
    sent = resend.Emails.send({"from": FROM, "to": "ann@example.com", "cc": "bob@example.com",
                               "subject": "Look me up (py)", "text": "hi"})
    email = resend.Emails.get(sent["id"])
    assert email["object"] == "email" and email["id"] == sent["id"]
    assert email["to"] == ["ann@example.com"] and email["cc"] == ["bob@example.com"]
    assert email["subject"] == "Look me up (py)" and email["from"] == FROM and email["created_at"]
    sdk.wait_record(sent["id"], lambda r: r["last_event"] == "delivered")
    assert resend.Emails.get(sent["id"])["last_event"] == "delivered"


def test_last_event_speaks_resends_names(sdk):
    """``last_event`` is Resend's name (``suppressed``, ``delivery_delayed``) where Postline's
    event type differs; the seed's ``status`` and the per-recipient states keep Postline's."""
    gone, slow = "gone-py@example.com", "slow-py@example.com"
    r = sdk.api.admin("POST", f"/api/email/services/{sdk.service_id}/suppressions", json={"email": gone})
    assert r.status_code == 201, r.text
    dropped = resend.Emails.send({"from": FROM, "to": gone, "subject": "Never (py)", "text": "x"})
    done = sdk.wait_record(dropped["id"], lambda r: r["events"])
    assert done["recipients"][gone]["status"] == "dropped" and done["status"] == "failed"
    assert resend.Emails.get(dropped["id"])["last_event"] == "suppressed"
    sdk.sink.rcpt_replies[slow] = "451 4.3.0 try again later"
    try:
        deferred = resend.Emails.send({"from": FROM, "to": slow, "subject": "Later (py)", "text": "x"})
        done = sdk.wait_record(deferred["id"], lambda r: r["recipients"][slow]["status"] == "deferred")
        assert done["status"] == "sent"
        assert resend.Emails.get(deferred["id"])["last_event"] == "delivery_delayed"
    finally:
        del sdk.sink.rcpt_replies[slow]


def test_message_id_is_the_header_the_mail_carried(sdk):
    """``message_id`` is the Message-ID of the mail that reached the receiving server: on the
    verified sending domain, on the sandbox sender's domain otherwise, and already (the value
    it will carry) while a scheduled message waits."""
    sent = resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": "Thread me (py)", "text": "x"})
    mail = sdk.mail_for(sent["id"]).message
    assert resend.Emails.get(sent["id"])["message_id"] == mail["Message-ID"] == f"<{sent['id']}@acme.test>"

    sdk.api.verify_sandbox(sdk.service_id, "sandy@example.com", sink_reader(sdk.sink, timeout=60))
    wait_verified(sdk.api, sdk.service_id)
    fallback = resend.Emails.send({"from": "me@unverified.test", "to": "sandy@example.com",
                                   "subject": "Via the sandbox (py)", "text": "x"})
    mail = sdk.mail_for(fallback["id"]).message
    assert mail["Message-ID"] == f"<{fallback['id']}@postline.localhost>"  # POSTLINE_SANDBOX_FROM's domain
    assert resend.Emails.get(fallback["id"])["message_id"] == mail["Message-ID"]

    due = datetime.now(timezone.utc) + timedelta(seconds=6)
    later = resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": "Soon (py)", "text": "x",
                                "scheduled_at": due.isoformat()})
    before = resend.Emails.get(later["id"])["message_id"]
    assert not [m for m in sdk.sink.received if later["id"].encode() in m.data]  # not built yet
    assert sdk.mail_for(later["id"]).message["Message-ID"] == before


def test_schedule_reschedule_cancel(sdk):
    sent = resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": "Later (py)", "text": "soon",
                               "scheduled_at": "in 1 min"})
    email_id = sent["id"]
    held = sdk.wait_record(email_id, lambda r: r["last_event"] == "scheduled" and r["events"])
    first_due = held["scheduled_at"]
    moved = resend.Emails.update({"id": email_id, "scheduled_at": "in 2 hours"})
    assert (moved["object"], moved["id"]) == ("email", email_id)
    sdk.wait_record(email_id, lambda r: sum(e["type"] == "scheduled" for e in r["events"]) == 2)
    assert resend.Emails.get(email_id)["scheduled_at"] > first_due
    canceled = resend.Emails.cancel(email_id)
    assert (canceled["object"], canceled["id"]) == ("email", email_id)
    # the relay dropped what it held and says so on the timeline
    done = sdk.wait_record(email_id, lambda r: r["recipients"]["ann@example.com"]["status"] == "canceled")
    assert done["last_event"] == "canceled"
    assert sdk.webhook(email_id, "canceled")["data"]["recipient"] == "ann@example.com"
    with pytest.raises(ResendError) as err:
        resend.Emails.cancel(email_id)
    assert err.value.code == 409 and "was canceled" in err.value.message
    assert not [m for m in sdk.sink.received if f"<{email_id}@".encode() in m.data]


def test_errors_reach_the_caller_through_the_sdk(sdk):
    with pytest.raises(ValidationError) as err:
        resend.Emails.send({"from": FROM, "to": "not an address", "subject": "x", "text": "x"})
    assert err.value.code == 400 and err.value.error_type == "validation_error"
    assert err.value.message.startswith("to:")
    with pytest.raises(ValidationError) as err:
        resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": "x", "text": "x",
                            "attachments": [{"filename": "a.pdf", "path": "https://example.com/a.pdf"}]})
    assert "path" in err.value.message and "attachments[0]" in err.value.message
    resend.api_key = "rs_eml_" + "x" * 32
    with pytest.raises(ResendError) as err:
        resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": "x", "text": "x"})
    assert err.value.code == 401 and err.value.message == "invalid API key"
    with pytest.raises(ResendError) as err:
        resend.Emails.get("00000000-0000-0000-0000-000000000000")
    assert err.value.code == 401
    resend.api_key = sdk.key
    with pytest.raises(ResendError) as err:
        resend.Emails.get("00000000-0000-0000-0000-000000000000")
    assert err.value.code == 404 and err.value.error_type == "not_found"
