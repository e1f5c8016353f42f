"""Bounces at send time (the receiving server refuses during the relay's SMTP transaction),
against a real SMTP server on loopback: the class is on the event, in the webhook and in the
message log; an unknown address is suppressed at once and the next send to it is dropped; a
policy refusal is not suppressed; a full mailbox is soft and suppresses only on the third."""
from __future__ import annotations

import json
import time

import pytest

from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.receiver import Receiver
from tests.support.smtp_sink import SmtpSink

BODY = {"from": "Acme <hello@acme.test>", "subject": "Hi", "text": "body"}
REFUSALS = {
    "nobody@example.com": "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown",
    "blocked@example.com": "550 5.7.1 Service unavailable; client host [127.0.0.1] blocked using zen.spamhaus.org",
    "full@example.com": "552 5.2.2 <full@example.com>: mailbox full",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sink, dns, rx = SmtpSink(rcpt_replies=REFUSALS).start(), DnsServer().start(), Receiver()
    proc = PostlineProcess(tmp_path_factory.mktemp("sync-bounces") / "data", env={
        "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address, "POSTLINE_DNS_SERVER": dns.address,
        "POSTLINE_WEBHOOK_ALLOW_PRIVATE": "true"}).start()
    api = Api(proc.url)
    sid, key = production_service(api, dns)
    r = api.admin("POST", f"/api/email/services/{sid}/webhooks", json={"url": rx.url, "events": ["bounced"]})
    assert r.status_code == 201, r.text
    yield {"api": api, "sid": sid, "key": key, "sink": sink, "rx": rx}
    proc.stop()
    rx.stop()
    sink.stop()
    dns.stop()


def send(world, rcpt: str) -> dict:
    r = world["api"].send(world["key"], {**BODY, "to": rcpt})
    assert r.status_code == 200, r.text
    return r.json()


def bounce_of(world, email_id: str, rcpt: str) -> tuple[dict, dict]:
    """(the bounced event, the recipient's state in the message log) once analytics has them."""
    rec = world["api"].wait_status(world["key"], email_id, rcpt, "bounced")
    return [e for e in rec["events"] if e["type"] == "bounced"][-1], rec["recipients"][rcpt]


def suppression(world, rcpt: str):
    return world["api"].admin("GET", f"/api/email/services/{world['sid']}/suppressions/{rcpt}")


def wait_suppressed(world, rcpt: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = suppression(world, rcpt)
        if r.status_code == 200:
            return r.json()
        time.sleep(0.2)
    raise AssertionError(f"{rcpt} was never suppressed")


def events_until(world, email_id: str, event_type: str, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = world["api"].http.get(f"/emails/{email_id}", headers={"Api-Key": world["key"]}).json()["events"]
        if any(e["type"] == event_type for e in events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"no {event_type} event for {email_id}")


def webhook_for(world, email_id: str) -> dict:
    got = world["rx"].wait(1, predicate=lambda r: json.loads(r["body"])["data"]["email_id"] == email_id)
    return json.loads(got[0]["body"])


def test_unknown_recipient_is_suppressed_at_once_and_the_next_send_dropped(world):
    rcpt = "nobody@example.com"
    email_id = send(world, rcpt)["id"]
    bounce, state = bounce_of(world, email_id, rcpt)
    assert (bounce["bounce_type"], bounce["bounce_class"], bounce["smtp_code"]) == ("hard", "unknown_recipient", 550)
    assert (state["bounce_type"], state["bounce_class"]) == ("hard", "unknown_recipient")
    hook = webhook_for(world, email_id)
    assert hook["type"] == "bounced" and hook["data"]["bounce_class"] == "unknown_recipient"
    entry = wait_suppressed(world, rcpt)
    assert entry["reason"] == "hard_bounce" and entry["source_email_id"] == email_id
    listed = world["api"].admin("GET", f"/api/email/services/{world['sid']}/suppressions").json()["data"]
    assert [s["reason"] for s in listed if s["email"] == rcpt] == ["hard_bounce"]
    again = send(world, rcpt)
    assert again["dropped"] == [{"recipient": rcpt, "reason": "suppressed"}]
    assert [e["type"] for e in events_until(world, again["id"], "dropped")] == ["dropped"]  # no sent, no bounce


def test_policy_refusal_bounces_but_is_not_suppressed(world):
    rcpt = "blocked@example.com"
    first = send(world, rcpt)["id"]
    bounce, _ = bounce_of(world, first, rcpt)
    assert (bounce["bounce_type"], bounce["bounce_class"]) == ("hard", "spam_block")
    assert webhook_for(world, first)["data"]["bounce_class"] == "spam_block"
    assert suppression(world, rcpt).status_code == 404
    # the next send is attempted (and refused again), not dropped
    second = send(world, rcpt)
    assert second["dropped"] == []
    bounce_of(world, second["id"], rcpt)
    assert suppression(world, rcpt).status_code == 404


def test_mailbox_full_is_soft_and_suppresses_on_the_third(world):
    rcpt = "full@example.com"
    for i in range(3):
        email_id = send(world, rcpt)["id"]
        bounce, state = bounce_of(world, email_id, rcpt)
        assert (bounce["bounce_type"], bounce["bounce_class"], bounce["smtp_code"]) == ("soft", "mailbox_full", 552)
        assert state["bounce_type"] == "soft"
        if i < 2:
            assert suppression(world, rcpt).status_code == 404
    entry = wait_suppressed(world, rcpt)
    assert entry["reason"] == "soft_bounce" and entry["source_email_id"] == email_id
