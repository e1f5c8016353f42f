"""Receiving's steps in-process: the parser on the shapes mail takes, the per-IP rate, and
retention (the real embedded log and chDB; the API answers through FastAPI in-process)."""
from __future__ import annotations

import asyncio
import smtplib
import time
from datetime import timedelta
from email.message import EmailMessage

from services.relay.inbound.rate import PerAddressRate
from services.relay.inbound.received_mail import parse_mail
from services.relay.inbound.receiver import Envelope, Receiver
from services.relay.inbound.server import serve
from shared import events as ev
from shared.store import received
from tests.support.broker import free_port
from tests.support.inproc import api_runtime, receiving_domain


def test_parse_keeps_threading_inline_parts_and_forwarded_mail():
    inner = EmailMessage()
    inner["From"], inner["Subject"] = "old@x.test", "the original"
    inner.set_content("original body")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "=?utf-8?q?J=C3=BCrgen?= <j@x.test>", "a@inbox.test", "=?utf-8?q?Gr=C3=BC=C3=9Fe?="
    msg["Message-ID"], msg["In-Reply-To"], msg["References"] = "<r2@x.test>", "<r1@x.test>", "<r0@x.test> <r1@x.test>"
    msg.set_content("see below")
    msg.add_alternative('<p>logo <img src="cid:logo@x"></p>', subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG...", maintype="image", subtype="png", cid="<logo@x>")
    msg.add_attachment(inner)
    p = parse_mail(bytes(msg))
    assert p.from_ == "Jürgen <j@x.test>" and p.subject == "Grüße"
    assert (p.message_id, p.in_reply_to, p.references) == ("<r2@x.test>", "<r1@x.test>", ["<r0@x.test>", "<r1@x.test>"])
    assert p.text.strip() == "see below" and "cid:logo@x" in p.html
    logo, forwarded = p.attachments
    assert (logo.content_type, logo.content_id, logo.disposition, logo.data) == ("image/png", "logo@x", "inline", b"\x89PNG...")
    assert forwarded.content_type == "message/rfc822" and b"original body" in forwarded.data


def test_parse_never_raises_on_broken_mail():
    p = parse_mail(b"From: <<<\r\nTo: ,,,@\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                   b"Content-Transfer-Encoding: base64\r\nContent-Type: application/pdf\r\n\r\n!!!not base64")
    assert p.subject == "x" and len(p.attachments) == 1


def test_rate_per_address_refills_over_time():
    now = [0.0]
    rate = PerAddressRate(2, clock=lambda: now[0])
    assert [rate.allow("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert rate.allow("10.0.0.2")  # another sender has its own bucket
    now[0] += 30  # 2 a minute: one token back after 30 s
    assert [rate.allow("10.0.0.1") for _ in range(2)] == [True, False]


async def test_retention_expires_old_mail(tmp_path):
    async with api_runtime(tmp_path, with_store=True) as (rt, admin):
        sid = await admin.service("support")
        key = (await admin("POST", f"/api/email/services/{sid}/api-keys",
                           json={"name": "r", "permission": "full_access"})).json()["key"]
        await receiving_domain(rt, admin, sid, "inbox.test")
        receiver = Receiver(rt)

        async def receive(subject: str) -> str:
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "ann@sender.test", "help@inbox.test", subject
            msg.set_content("body")
            msg.add_attachment(b"bytes", maintype="application", subtype="octet-stream", filename="a.bin")
            [event] = await receiver.handle(Envelope("ann@sender.test", ["help@inbox.test"], "127.0.0.1", "x"), bytes(msg))
            return event.email_id

        kept = await receive("kept for 30 days")
        r = await admin("PATCH", f"/api/email/services/{sid}", json={"receiving_retention_days": 1})
        assert r.status_code == 200 and r.json()["receiving_retention_days"] == 1
        short = await receive("kept for 1 day")
        get = lambda eid: admin.http.get(f"/emails/receiving/{eid}", headers={"Authorization": f"Bearer {key}"})
        assert (await get(short)).status_code == 200

        await received.purge_expired(rt.store, ev.utcnow() + timedelta(days=2))
        assert (await get(short)).status_code == 404 and (await get(kept)).status_code == 200
        [att] = (await get(kept)).json()["attachments"]
        assert await received.attachment(rt.store, sid, kept, att["id"]) == b"bytes"

        await received.purge_expired(rt.store, ev.utcnow() + timedelta(days=31))
        assert (await get(kept)).status_code == 404
        assert await received.attachment(rt.store, sid, kept, att["id"]) is None
        assert (await admin("PATCH", f"/api/email/services/{sid}", json={"receiving_retention_days": 0})).status_code == 400


async def test_the_listener_tells_a_sender_over_its_rate_to_come_back(tmp_path):
    port = free_port()
    async with api_runtime(tmp_path, with_store=True, inbound_smtp_port=port, inbound_rate_per_minute=2) as (rt, admin):
        sid = await admin.service("support")
        await receiving_domain(rt, admin, sid, "inbox.test")
        stop = asyncio.Event()
        listener = asyncio.create_task(serve(rt, stop))

        def three_messages() -> list[tuple[int, bytes]]:
            deadline = time.monotonic() + 10
            while True:
                try:
                    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            replies = []
            with s:
                s.ehlo("mail.sender.test")
                for i in range(3):
                    s.mail("ann@sender.test")
                    replies.append(s.rcpt(f"u{i}@inbox.test"))
                    s.rset()
                s.mail("")
                replies.append(s.rcpt("b+nope@bounces.inbox.test"))  # a bounce address is no receiving one, and no token
            return replies

        try:
            replies = await asyncio.to_thread(three_messages)
        finally:
            stop.set()
            await listener
    assert [code for code, _ in replies[:3]] == [250, 250, 451]
    assert replies[2][1].startswith(b"4.7.1") and replies[3][0] == 550 and replies[3][1].startswith(b"5.1.1")


async def test_an_unverified_claim_on_a_domain_neither_receives_nor_blocks_its_owner(tmp_path):
    """Anyone can add any domain name to a service: turned to receiving unverified, it takes
    no mail and does not stop the verified owner (who then gets the mail); a deleted
    service's claim stops nobody either."""
    async with api_runtime(tmp_path, with_store=True) as (rt, admin):
        receiver = Receiver(rt)
        intruder, owner, later = await admin.service("intruder"), await admin.service("owner"), await admin.service("later")
        did = (await admin("POST", f"/api/email/services/{intruder}/domains", json={"domain": "acme.test"})).json()["id"]
        r = await admin("PATCH", f"/api/email/services/{intruder}/domains/{did}", json={"receiving": True})
        assert r.status_code == 200 and r.json()["verified"] is False
        assert not await receiver.receives("ceo@acme.test")
        # deferred, not refused (only the owner can point the MX here: a domain that lost its
        # verification gets its mail once it verifies again); a domain nobody claimed is refused
        assert receiver.awaits_verification("ceo@acme.test") and not receiver.awaits_verification("x@other.test")

        await receiving_domain(rt, admin, owner, "acme.test")  # no 409: the intruder's claim is no claim
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "ann@sender.test", "ceo@acme.test", "Q3 wire instructions"
        msg.set_content("body")
        [event] = await receiver.handle(Envelope("ann@sender.test", ["ceo@acme.test"], "127.0.0.1", "x"), bytes(msg))
        assert event.service_id == owner

        later_did = (await admin("POST", f"/api/email/services/{later}/domains", json={"domain": "acme.test"})).json()["id"]
        await rt.control.change(rt.control.state.domains[later_did], verified=True)
        r = await admin("PATCH", f"/api/email/services/{later}/domains/{later_did}", json={"receiving": True})
        assert r.status_code == 409  # the owner receives for it
        assert (await admin("DELETE", f"/api/email/services/{owner}")).status_code in (200, 204)
        r = await admin("PATCH", f"/api/email/services/{later}/domains/{later_did}", json={"receiving": True})
        assert r.status_code == 200, r.text  # a deleted service holds nothing
        assert receiver.service_for("ceo@acme.test").service_id == later
