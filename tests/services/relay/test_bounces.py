"""Bounces and complaints fed over SMTP to the inbound listener (real DSN/ARF samples from
tests/data/bounces): events, suppression entries, and the next send being dropped."""
from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.relay.inbound.parse import parse
from tests.support.broker import free_port
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.smtp_sink import SmtpSink
from tests.support.waiting import until

DATA = Path(__file__).resolve().parents[2] / "data" / "bounces"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sink, dns = SmtpSink().start(), DnsServer().start()
    inbound = free_port()
    proc = PostlineProcess(tmp_path_factory.mktemp("bounces") / "data", env={
        "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address, "POSTLINE_DNS_SERVER": dns.address,
        "POSTLINE_INBOUND_SMTP_PORT": str(inbound)}).start()
    api = Api(proc.url)
    sid, key = production_service(api, dns)
    yield {"api": api, "sid": sid, "key": key, "sink": sink, "inbound": inbound, "proc": proc}
    proc.stop()
    sink.stop()
    dns.stop()


def send_and_get_verp(world, rcpt: str) -> tuple[str, str]:
    email_id = world["api"].send(world["key"], {"from": "hello@acme.test", "to": rcpt, "subject": "Welcome",
                                                "text": "hi"}).json()["id"]
    got = world["sink"].wait_for(lambda m: email_id.encode() in m.data)[0]
    world["api"].wait_status(world["key"], email_id, rcpt, "delivered")
    return email_id, got.mail_from


def feed(world, sample: str, verp: str, rcpt: str, email_id: str) -> None:
    raw = (DATA / sample).read_bytes().replace(b"BOUNCE_TO", verp.encode()).replace(b"RCPT", rcpt.encode()) \
        .replace(b"MSGID", f"{email_id}@acme.test".encode())
    deadline = time.monotonic() + 20
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", world["inbound"], timeout=10) as s:
                s.sendmail("", [verp], raw)
            return
        except smtplib.SMTPDataError as exc:  # 451 until analytics has the message: retry, as MTAs do
            if exc.smtp_code != 451 or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def suppression(world, rcpt: str):
    return world["api"].admin("GET", f"/api/email/services/{world['sid']}/suppressions/{rcpt}")


@pytest.mark.parametrize("sample,code", [("postfix_hard.eml", 550), ("exim_plain.eml", 550),
                                         ("exchange_plain.eml", 550)])
def test_hard_bounce_suppresses_and_next_send_is_dropped(world, sample, code):
    """All three say the address does not exist (5.1.1; "No such user here" with no code; Exchange's 5.1.10)."""
    rcpt = f"hard-{sample.split('.')[0]}@example.com"
    email_id, verp = send_and_get_verp(world, rcpt)
    feed(world, sample, verp, rcpt, email_id)
    rec = world["api"].wait_status(world["key"], email_id, rcpt, "bounced")
    bounce = [e for e in rec["events"] if e["type"] == "bounced"][0]
    assert bounce["bounce_type"] == "hard" and bounce["smtp_code"] == code and bounce["smtp_reply"].startswith("5.")
    assert bounce["bounce_class"] == "unknown_recipient" and rec["recipients"][rcpt]["bounce_class"] == "unknown_recipient"
    s = suppression(world, rcpt)
    assert s.status_code == 200 and s.json()["reason"] == "hard_bounce" and s.json()["source_email_id"] == email_id
    r = world["api"].send(world["key"], {"from": "hello@acme.test", "to": rcpt, "subject": "again", "text": "x"})
    assert r.json()["dropped"] == [{"recipient": rcpt, "reason": "suppressed"}]
    # removing the suppression lets the next send out
    assert world["api"].admin("DELETE", f"/api/email/services/{world['sid']}/suppressions/{rcpt}").status_code == 204
    send_and_get_verp(world, rcpt)


def test_spam_block_dsn_is_a_hard_bounce_that_does_not_suppress(world):
    rcpt = "filtered@example.com"
    email_id, verp = send_and_get_verp(world, rcpt)
    feed(world, "gmail_spam_block.eml", verp, rcpt, email_id)
    rec = world["api"].wait_status(world["key"], email_id, rcpt, "bounced")
    bounce = [e for e in rec["events"] if e["type"] == "bounced"][0]
    assert (bounce["bounce_type"], bounce["bounce_class"], bounce["smtp_code"]) == ("hard", "spam_block", 550)
    assert suppression(world, rcpt).status_code == 404
    r = world["api"].send(world["key"], {"from": "hello@acme.test", "to": rcpt, "subject": "again", "text": "x"})
    assert r.json().get("dropped") in (None, [])


def test_complaint_suppresses(world):
    rcpt = "grumpy@example.com"
    email_id, verp = send_and_get_verp(world, rcpt)
    feed(world, "arf_abuse.eml", verp, rcpt, email_id)
    rec = world["api"].wait_status(world["key"], email_id, rcpt, "complained")
    assert [e["feedback_type"] for e in rec["events"] if e["type"] == "complained"] == ["abuse"]
    assert suppression(world, rcpt).json()["reason"] == "complaint"


def test_soft_bounces_suppress_on_the_third(world):
    rcpt = "full@example.com"
    for i in range(3):
        email_id, verp = send_and_get_verp(world, rcpt)
        feed(world, "gmail_full.eml", verp, rcpt, email_id)  # a 5.2.2 the server gave up on: soft (docs/delivery.md)
        rec = world["api"].wait_status(world["key"], email_id, rcpt, "bounced")
        assert rec["recipients"][rcpt]["bounce_type"] == "soft" and rec["recipients"][rcpt]["bounce_class"] == "mailbox_full"
        if i < 2:
            # the bounced status comes from analytics' timeline, so the bounce is loaded (and counts
            # for the next one); the suppression rules ran before the inbound listener's 250
            assert suppression(world, rcpt).status_code == 404
    entry = until(lambda: (r := suppression(world, rcpt)).status_code == 200 and r.json(), 10, what="the suppression")
    assert entry["reason"] == "soft_bounce"


def test_a_delay_report_is_deferred_and_suppresses_nothing(world):
    """``Action: delayed`` (Gmail: the inbox is full, will retry): the server still holds the
    message, so it is ``deferred`` (Resend's ``delivery_delayed``), not a soft bounce that
    counts toward the third-in-7-days suppression."""
    rcpt = "slowbox@example.com"
    for _ in range(3):
        email_id, verp = send_and_get_verp(world, rcpt)
        feed(world, "gmail_soft.eml", verp, rcpt, email_id)
        events = lambda: world["api"].http.get(f"/emails/{email_id}", headers={"Api-Key": world["key"]}).json()["events"]
        got = until(lambda: [e for e in events() if e["type"] in ("deferred", "bounced")], 20, what="the report's event")
        assert [e["type"] for e in got] == ["deferred"] and "4.2.2" in got[0]["smtp_reply"], got
    assert suppression(world, rcpt).status_code == 404


def test_unknown_mail_is_kept_and_bad_addresses_refused(world):
    rcpt = "chatty@example.com"
    email_id, verp = send_and_get_verp(world, rcpt)
    feed(world, "autoreply_unknown.eml", verp, rcpt, email_id)
    kept = list((world["proc"].data_dir / "inbound" / "unparsed").glob("*.eml"))
    assert any(b"See you on Monday" in p.read_bytes() for p in kept)
    assert suppression(world, rcpt).status_code == 404
    with smtplib.SMTP("127.0.0.1", world["inbound"], timeout=10) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("", ["bounces+forged-0-aaaaaaaa@bounces.acme.test"], b"Subject: x\r\n\r\nx")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("", ["postmaster@acme.test"], b"Subject: x\r\n\r\nx")


CORPUS = [p.read_bytes() for p in sorted(DATA.glob("*.eml"))]


@settings(max_examples=300, deadline=2000, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(data=st.one_of(
    st.binary(max_size=4000),
    st.tuples(st.sampled_from(CORPUS), st.integers(0, 2000), st.binary(max_size=200)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:]),
    st.tuples(st.sampled_from(CORPUS), st.integers(0, 2000)).map(lambda t: t[0][: t[1]]),
))
def test_parser_fuzz_never_crashes_or_hangs(data):
    report = parse(data)
    assert report.kind in ("bounce", "complaint", "unknown")
    for r in report.recipients:
        assert r.bounce_type in (None, "hard", "soft")


def test_one_transaction_for_recipients_at_one_domain_and_the_dsn_names_who_bounced(world):
    """Two recipients at one domain travel in one SMTP transaction (one copy over the wire)
    with a message-wide return path; a DSN to it bounces only the recipient it names in
    Final-Recipient, and the other stays delivered."""
    ann, bob = "multi-ann@example.org", "multi-bob@example.org"
    email_id = world["api"].send(world["key"], {"from": "hello@acme.test", "to": [ann, bob], "subject": "Both",
                                                "text": "hi"}).json()["id"]
    got = world["sink"].wait_for(lambda m: email_id.encode() in m.data)
    assert len(got) == 1 and sorted(got[0].rcpt_tos) == [ann, bob]
    verp = got[0].mail_from
    assert verp.startswith("bounces+") and verp.split("@")[0].split("-")[1] == "a"  # message-wide token
    world["api"].wait_status(world["key"], email_id, bob, "delivered")
    feed(world, "postfix_hard.eml", verp, bob, email_id)
    rec = world["api"].wait_status(world["key"], email_id, bob, "bounced")
    assert rec["recipients"][ann]["status"] == "delivered"
    assert suppression(world, bob).status_code == 200 and suppression(world, ann).status_code == 404
