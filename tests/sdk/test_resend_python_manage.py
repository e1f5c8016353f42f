"""Resend's Python SDK managing a service with a full-access key, unchanged but for the base
URL: API keys, domains, suppressions, webhooks (events, attempts, replay), the email list,
strict and permissive batches; a sending key refused there; paths Postline does not offer."""
from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage

import pytest
import resend
from resend.exceptions import ResendError

from tests.support.receiver import Receiver

FROM = "Acme <hello@acme.test>"


@pytest.fixture
def manager(sdk_world):
    resend.api_key, resend.api_url = sdk_world.full_key, sdk_world.url
    yield sdk_world
    resend.api_key = sdk_world.key


def eventually(check, timeout: float = 30):
    """``check()``'s value once truthy (analytics loads rows in batches: about a second)."""
    deadline, value = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.3)
    raise AssertionError(f"never true: {check}")


def acme_id() -> str:
    return next(d["id"] for d in resend.Domains.list()["data"] if d["name"] == "acme.test")


def smtp_send(world, key: str, sender: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "ann@example.com", "over SMTP"
    msg.set_content("hi")
    with smtplib.SMTP("127.0.0.1", int(world.proc.env["POSTLINE_SUBMISSION_PORT"]), timeout=30) as s:
        s.login("postline", key)
        s.send_message(msg)


def test_api_keys_with_permission_and_a_domain(manager):
    made = resend.ApiKeys.create({"name": "acme only", "permission": "sending_access", "domain_id": acme_id()})
    assert made["token"].startswith("rs_eml_") and made["id"]
    listed = {k["id"]: k for k in resend.ApiKeys.list()["data"]}
    assert listed[made["id"]]["name"] == "acme only" and listed[made["id"]]["permission"] == "sending_access"
    assert resend.ApiKeys.update({"id": made["id"], "name": "acme sender"})["id"] == made["id"]
    assert {k["id"]: k["name"] for k in resend.ApiKeys.list({"limit": 100})["data"]}[made["id"]] == "acme sender"

    resend.api_key = made["token"]  # the limited key: its own domain sends, another is refused naming `from`
    assert resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": "limited", "text": "x"})["id"]
    with pytest.raises(ResendError) as err:
        resend.Emails.send({"from": "hello@other.test", "to": "ann@example.com", "subject": "x", "text": "x"})
    assert (err.value.code, err.value.error_type) == (403, "validation_error")
    assert err.value.message.startswith("from: this API key may only send from acme.test")
    with pytest.raises(smtplib.SMTPDataError) as smtp_err:  # the same rule over SMTP submission
        smtp_send(manager, made["token"], "hello@other.test")
    assert smtp_err.value.smtp_code == 550 and b"from: this API key may only send from acme.test" in smtp_err.value.smtp_error
    smtp_send(manager, made["token"], "hello@acme.test")

    resend.api_key = manager.full_key
    assert resend.ApiKeys.remove(made["id"])["deleted"] is True
    assert made["id"] not in {k["id"] for k in resend.ApiKeys.list()["data"]}
    resend.api_key = made["token"]
    with pytest.raises(ResendError) as err:
        resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": "revoked", "text": "x"})
    assert err.value.code == 401


def test_domains(manager):
    made = resend.Domains.create({"name": "news.acme.test"})
    assert (made["name"], made["status"]) == ("news.acme.test", "not_started")
    for rec in made["records"]:
        if rec["type"] == "TXT":  # published as Postline's records say, split in 255-byte strings
            manager.dns.txt(rec["name"], [rec["value"][i:i + 255] for i in range(0, len(rec["value"]), 255)])
    assert resend.Domains.verify(made["id"])["id"] == made["id"]
    got = resend.Domains.get(made["id"])
    assert got["status"] == "verified"
    assert all(r["status"] == "verified" for r in got["records"] if r["record"] in ("SPF", "DKIM"))
    assert made["id"] in [d["id"] for d in resend.Domains.list()["data"]]
    resend.Domains.update({"id": made["id"], "tracking_subdomain": "links"})
    got = resend.Domains.get(made["id"])
    assert got["tracking_subdomain"] == "links"
    assert any(r["type"] == "CNAME" and r["name"] == "links.news.acme.test" for r in got["records"])
    with pytest.raises(ResendError) as err:
        resend.Domains.update({"id": made["id"], "open_tracking": True})
    assert err.value.code == 422 and err.value.message.startswith("open_tracking: not per domain")
    assert resend.Domains.remove(made["id"])["deleted"] is True
    with pytest.raises(ResendError) as err:
        resend.Domains.get(made["id"])
    assert (err.value.code, err.value.error_type) == (404, "not_found")


def test_suppressions(manager):
    added = resend.Suppressions.add({"email": "Gone@Example.com"})
    assert added["object"] == "suppression"
    assert resend.Suppressions.add({"email": "gone@example.com"})["id"] == added["id"]  # the existing entry
    by_email = resend.Suppressions.get("gone@example.com")
    assert (by_email["id"], by_email["email"], by_email["origin"]) == (added["id"], "gone@example.com", "manual")
    assert resend.Suppressions.get(added["id"])["email"] == "gone@example.com"
    assert added["id"] in [s["id"] for s in resend.Suppressions.list({"origin": "manual"})["data"]]
    assert added["id"] not in [s["id"] for s in resend.Suppressions.list({"origin": "bounce"})["data"]]
    assert resend.Suppressions.remove(added["id"])["deleted"] is True
    with pytest.raises(ResendError) as err:
        resend.Suppressions.get("gone@example.com")
    assert err.value.code == 404


def test_webhooks_with_events_attempts_and_replay(manager):
    endpoint = Receiver()
    try:
        made = resend.Webhooks.create({"endpoint": endpoint.url, "events": ["email.delivered"]})
        assert made["signing_secret"].startswith("whsec_")
        got = resend.Webhooks.get(made["id"])
        assert (got["endpoint"], got["events"], got["status"]) == (endpoint.url, ["email.delivered"], "enabled")
        resend.Webhooks.update({"webhook_id": made["id"], "events": ["email.delivered", "email.bounced"]})
        assert resend.Webhooks.get(made["id"])["events"] == ["email.bounced", "email.delivered"]
        assert made["id"] in [w["id"] for w in resend.Webhooks.list()["data"]]

        sent = resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": "hooked", "text": "x"})
        first = endpoint.wait(1, 30, lambda r: sent["id"].encode() in r["body"])[0]
        events = eventually(lambda: resend.Webhooks.list_events(made["id"])["data"])
        event = events[0]
        assert (event["type"], event["status"]) == ("email.delivered", "success")
        assert resend.Webhooks.get_event(made["id"], event["id"])["payload"]["email_id"] == sent["id"]
        [attempt] = resend.Webhooks.list_event_attempts(made["id"], event["id"])["data"]
        assert attempt["http_status_code"] == 200
        assert resend.Webhooks.replay_event(made["id"], event["id"])["id"] == event["id"]
        again = endpoint.wait(2, 30, lambda r: sent["id"].encode() in r["body"])
        assert again[1]["headers"]["webhook-id"] == first["headers"]["webhook-id"]

        rotated = resend.Webhooks.rotate_signing_secret(made["id"])
        assert rotated["signing_secret"].startswith("whsec_") and rotated["signing_secret"] != made["signing_secret"]
        with pytest.raises(ResendError) as err:
            resend.Webhooks.create({"endpoint": endpoint.url, "events": ["contact.created"]})
        assert err.value.code == 422 and err.value.message.startswith("events: Postline does not emit")
        assert resend.Webhooks.remove(made["id"])["deleted"] is True
    finally:
        endpoint.stop()


def test_the_email_list_pages_newest_first(manager):
    ids = [resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": f"listed {i}", "text": "x"})["id"]
           for i in range(3)]
    eventually(lambda: ids[-1] in [e["id"] for e in resend.Emails.list({"limit": 10})["data"]])
    first = resend.Emails.list({"limit": 2})
    assert first["object"] == "list" and first["has_more"] is True and len(first["data"]) == 2
    second = resend.Emails.list({"limit": 2, "after": first["data"][-1]["id"]})
    assert first["data"][-1]["id"] not in [e["id"] for e in second["data"]]
    assert [e["id"] for e in resend.Emails.list({"limit": 2, "before": second["data"][0]["id"]})["data"]] == \
        [e["id"] for e in first["data"]]
    mine = [e for e in resend.Emails.list({"limit": 100})["data"] if e["id"] in ids]
    assert [e["id"] for e in mine] == ids[::-1]
    assert mine[0]["subject"] == "listed 2" and mine[0]["to"] == ["ann@example.com"] and mine[0]["from"] == FROM


def test_the_email_list_says_what_get_says(manager):
    """Each listed email has the ``last_event`` and ``message_id`` ``Emails.get`` gives it:
    scheduled, canceled and suppressed ones included (Resend's names, not Postline's)."""
    gone = "gone-list@example.com"
    assert resend.Suppressions.add({"email": gone})["object"] == "suppression"
    held = resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": "held (list)", "text": "x",
                               "scheduled_at": "in 2 hours"})["id"]
    dropped = resend.Emails.send({"from": FROM, "to": gone, "subject": "dropped (list)", "text": "x"})["id"]
    canceled = resend.Emails.send({"from": FROM, "to": "ann@example.com", "subject": "canceled (list)", "text": "x",
                                   "scheduled_at": "in 2 hours"})["id"]
    eventually(lambda: resend.Emails.get(canceled)["last_event"] == "scheduled" and
               manager.record(canceled)["events"])
    resend.Emails.cancel(canceled)
    expected = {held: "scheduled", dropped: "suppressed", canceled: "canceled"}

    def listed() -> dict:
        return {e["id"]: e for e in resend.Emails.list({"limit": 100})["data"] if e["id"] in expected}
    eventually(lambda: {i: e["last_event"] for i, e in listed().items()} == expected)
    for email_id, item in listed().items():
        got = resend.Emails.get(email_id)
        assert (item["last_event"], item["message_id"]) == (got["last_event"], got["message_id"])
        assert item["message_id"] == f"<{email_id}@acme.test>"


def test_strict_and_permissive_batches(manager):
    resend.api_key = manager.key  # batches are sends: a sending key will do
    good = {"from": FROM, "to": ["ann@example.com"], "subject": "batch ok (py)", "text": "1"}
    bad = {"from": FROM, "to": ["nobody"], "subject": "batch bad (py)", "text": "2"}
    with pytest.raises(ResendError) as err:  # strict, the default: all or nothing
        resend.Batch.send([good, bad])
    assert (err.value.code, err.value.error_type) == (422, "validation_error")
    assert err.value.message.startswith("[1].to")
    out = resend.Batch.send([good, bad], {"batch_validation": "permissive"})
    [sent] = out["data"]
    assert out["errors"][0]["index"] == 1 and out["errors"][0]["message"].startswith("[1].to")
    assert manager.mail_for(sent["id"]).message["Subject"] == "batch ok (py)"


def test_a_sending_key_is_refused_on_management_paths(manager):
    resend.api_key = manager.key
    for call in (resend.ApiKeys.list, resend.Domains.list, resend.Suppressions.list, resend.Webhooks.list,
                 resend.Emails.list):
        with pytest.raises(ResendError) as err:
            call()
        assert (err.value.code, err.value.error_type) == (403, "restricted_api_key"), call


def test_what_postline_does_not_offer_says_so(manager):
    for call in (resend.Broadcasts.list, resend.Segments.list, resend.Topics.list):
        with pytest.raises(ResendError) as err:
            call()
        assert (err.value.code, err.value.error_type) == (404, "not_found")
        assert "Postline does not offer Resend's" in err.value.message
