"""Receiving email end to end (docs/receiving.md): `postline all` with two API processes (the
API reads what the inbound listener's process stored), a real DNS server for the MX check
and the SPF/DKIM/DMARC verdicts, real SMTP clients (smtplib, swaks), a real webhook receiver
verified with `standardwebhooks`, and Resend's Python SDK for the receiving API."""
from __future__ import annotations

import base64
import os
import smtplib
import socket
import subprocess
from email.message import EmailMessage

import dkim
import httpx
import pytest
import resend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from standardwebhooks.webhooks import Webhook

from services.relay.inbound.routing import forward_request
from shared import events as ev
from tests.support.broker import free_port
from tests.support.dns_server import DnsServer
from tests.support.postline import ADMIN_TOKEN, Api, PostlineProcess, dkim_results
from tests.support.receiver import Receiver
from tests.support.smtp_sink import SmtpSink
from tests.support.waiting import until

PDF = b"%PDF-1.4\n" + os.urandom(150_000)  # binary, not a multiple of 3: base64 padding must survive
CSV = "name,amount\nann,12\nbob,7\n".encode()
MAX_BYTES = 1_000_000


def _dkim_key() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(der).decode()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    dns, hooks, sink = DnsServer().start(), Receiver(), SmtpSink().start()
    inbound = free_port()
    proc = PostlineProcess(tmp_path_factory.mktemp("receiving") / "data", env={
        "POSTLINE_DNS_SERVER": dns.address, "POSTLINE_WEBHOOK_ALLOW_PRIVATE": "true", "POSTLINE_WORKERS": "2",
        "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address,
        "POSTLINE_INBOUND_SMTP_PORT": str(inbound), "POSTLINE_INBOUND_MAX_MESSAGE_BYTES": str(MAX_BYTES)}).start()
    api = Api(proc.url)
    until(lambda: _listening(inbound), timeout=60, what="the inbound listener")  # the background process starts last
    sid = api.create_service("support")
    r = api.admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": "reader", "permission": "full_access"})
    assert r.status_code == 201, r.text
    domain = api.admin("POST", f"/api/email/services/{sid}/domains", json={"domain": "inbox.test"}).json()
    hook = api.admin("POST", f"/api/email/services/{sid}/webhooks",
                     json={"url": hooks.url, "events": ["email.received"]}).json()
    # the sender's domain, as a real one publishes it: SPF for this host, a DKIM key, DMARC reject
    pem, public = _dkim_key()
    dns.txt("sender.test", "v=spf1 ip4:127.0.0.1 -all")
    dns.txt("s1._domainkey.sender.test", [f"v=DKIM1; k=rsa; p={public}"[i:i + 250]
                                          for i in range(0, len(f"v=DKIM1; k=rsa; p={public}"), 250)])
    dns.txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    yield {"api": api, "proc": proc, "dns": dns, "hooks": hooks, "inbound": inbound, "sid": sid, "key": r.json()["key"],
           "domain": domain, "secret": hook["secret"], "pem": pem, "sink": sink}
    proc.stop()
    sink.stop()
    hooks.stop()
    dns.stop()


@pytest.fixture(scope="module")
def receiving(world):
    """inbox.test receives (the first test checks the switch itself): verified, as only a
    verified domain receives, its records published as a real owner does."""
    api, sid, did = world["api"], world["sid"], world["domain"]["id"]
    for rec in world["domain"]["records"]:
        if rec["type"] == "TXT":
            world["dns"].txt(rec["name"], rec.get("value_strings") or rec["value"])
    assert api.admin("POST", f"/api/email/services/{sid}/domains/{did}/verify").json()["verified"]
    r = api.admin("PATCH", f"/api/email/services/{sid}/domains/{did}", json={"receiving": True})
    assert r.status_code == 200, r.text
    return r.json()


def signed(world, msg: EmailMessage) -> bytes:
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    return dkim.sign(raw, b"s1", b"sender.test", world["pem"], include_headers=[b"from", b"to", b"subject",
                                                                                  b"message-id"]) + raw


def smtp_send(world, raw: bytes, rcpts: list[str], mail_from: str = "ann@sender.test") -> None:
    with smtplib.SMTP("127.0.0.1", world["inbound"], timeout=30) as s:
        s.ehlo("mail.sender.test")
        s.sendmail(mail_from, rcpts, raw)


def webhook_for(world, subject: str) -> dict:
    req = world["hooks"].wait(1, predicate=lambda r: f'"subject":"{subject}"'.encode() in r["body"])[0]
    return Webhook(world["secret"]).verify(req["body"], {k: req["headers"][k] for k in
                                                         ("webhook-id", "webhook-timestamp", "webhook-signature")})


def sdk(world) -> None:
    resend.api_key, resend.api_url = world["key"], world["proc"].url


def test_receiving_domain_publishes_an_mx_record_verified_like_the_others(world, receiving):
    mx = [r for r in receiving["records"] if r["record"] == "RECEIVING"]
    assert receiving["receiving"] is True
    assert mx == [{"record": "RECEIVING", "type": "MX", "name": "inbox.test", "value": "10 postline.localhost",
                   "required": True}]
    path = f"/api/email/services/{world['sid']}/domains/{world['domain']['id']}/verify"
    check = lambda: next(c for c in world["api"].admin("POST", path).json()["checks"] if c["record"] == "RECEIVING")
    assert check()["status"] == "missing"
    world["dns"].mx("inbox.test", (10, "postline.localhost"))
    assert check()["status"] == "found"
    # another service cannot claim the same domain for receiving
    other = world["api"].create_service("other")
    d = world["api"].admin("POST", f"/api/email/services/{other}/domains", json={"domain": "inbox.test"}).json()
    r = world["api"].admin("PATCH", f"/api/email/services/{other}/domains/{d['id']}", json={"receiving": True})
    assert r.status_code == 409 and "receiving" in r.json()["error"]
    r = world["api"].admin("PATCH", f"/api/email/services/{other}/domains/{d['id']}", json={"receiving": "yes"})
    assert r.status_code == 400 and "receiving" in r.json()["error"]


def test_mail_with_attachments_arrives_as_a_signed_webhook_and_byte_identical_through_the_sdk(world, receiving):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Cc"] = "Ann <ann@sender.test>", "Support <help@inbox.test>", "cc@elsewhere.test"
    msg["Subject"], msg["Message-ID"] = "Invoice question", "<q1@sender.test>"
    msg["In-Reply-To"], msg["References"] = "<orig@inbox.test>", "<root@inbox.test> <orig@inbox.test>"
    msg["Reply-To"] = "ann.replies@sender.test"
    msg.set_content("Hello, see the attached invoice.")
    msg.add_alternative("<p>Hello, see the <b>attached</b> invoice.</p>", subtype="html")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    msg.add_attachment(CSV, maintype="text", subtype="csv", filename="lines.csv")
    smtp_send(world, signed(world, msg), ["help@inbox.test"])

    event = webhook_for(world, "Invoice question")
    data = event["data"]
    assert event["type"] == "email.received" and event["created_at"]
    assert data["from"] == "Ann <ann@sender.test>" and data["to"] == ["Support <help@inbox.test>"]
    assert data["cc"] == ["cc@elsewhere.test"] and data["message_id"] == "<q1@sender.test>"
    assert [(a["filename"], a["content_type"], a["size"]) for a in data["attachments"]] == [
        ("invoice.pdf", "application/pdf", len(PDF)), ("lines.csv", "text/csv", len(CSV))]
    assert (data["spf"], data["dkim"], data["dmarc"]) == ("pass", "pass", "pass")

    sdk(world)
    got = resend.Emails.Receiving.get(data["email_id"])
    assert got["subject"] == "Invoice question" and got["text"].strip() == "Hello, see the attached invoice."
    assert "<b>attached</b>" in got["html"] and got["reply_to"] == ["ann.replies@sender.test"]
    assert got["headers"]["In-Reply-To"] == "<orig@inbox.test>" and got["received_for"] == ["help@inbox.test"]
    assert got["references"] == ["<root@inbox.test>", "<orig@inbox.test>"]
    assert got["verdicts"]["dkim_domains"] == ["sender.test"]
    listed = resend.Emails.Receiving.list()
    assert data["email_id"] in [m["id"] for m in listed["data"]] and "html" not in listed["data"][0]
    files = resend.Emails.Receiving.Attachments.list(data["email_id"])["data"]
    contents = {a["filename"]: httpx.get(a["download_url"]).content for a in files}
    assert contents == {"invoice.pdf": PDF, "lines.csv": CSV}
    one = resend.Emails.Receiving.Attachments.get(data["email_id"], files[0]["id"])
    assert one["object"] == "attachment" and one["size"] == len(PDF) and one["expires_at"]


def test_download_links_are_signed_and_scoped(world, receiving):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@sender.test", "links@inbox.test", "Link check"
    msg.set_content("x")
    msg.add_attachment(b"secret bytes", maintype="application", subtype="octet-stream", filename="s.bin")
    smtp_send(world, signed(world, msg), ["links@inbox.test"])
    email_id = webhook_for(world, "Link check")["data"]["email_id"]
    base = f"/api/email/services/{world['sid']}/emails/receiving/{email_id}"
    [att] = world["api"].admin("GET", base + "/attachments").json()["data"]  # the admin door
    good = httpx.get(att["download_url"])
    assert good.content == b"secret bytes" and good.headers["content-disposition"] == 'attachment; filename="s.bin"'
    for tampered in (att["download_url"].replace("signature=", "signature=0"),
                     att["download_url"].replace("expires=", "expires=1")):  # another expiry breaks the signature
        assert httpx.get(tampered).status_code == 404
    # another service's admin path and full-access key see nothing; a sending key is refused
    other = world["api"].create_service("nosy")
    assert world["api"].admin("GET", f"/api/email/services/{other}/emails/receiving/{email_id}").status_code == 404
    nosy = world["api"].admin("POST", f"/api/email/services/{other}/api-keys",
                              json={"name": "n", "permission": "full_access"}).json()["key"]
    http = world["api"].http
    assert http.get(f"/emails/receiving/{email_id}", headers={"Authorization": f"Bearer {nosy}"}).status_code == 404
    assert http.get("/emails/receiving", headers={"Authorization": f"Bearer {nosy}"}).json()["data"] == []
    sending = world["api"].create_key(world["sid"])
    r = http.get("/emails/receiving", headers={"Authorization": f"Bearer {sending}"})
    assert r.status_code == 403 and r.json()["name"] == "restricted_api_key"
    r = http.get("/emails/receiving", params={"limit": 0}, headers={"Authorization": f"Bearer {world['key']}"})
    assert r.status_code == 400 and r.json()["error"].startswith("limit:")


def test_forged_dkim_signature_sent_by_swaks_is_recorded_as_fail(world, receiving, tmp_path):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@sender.test", "help@inbox.test", "Forged"
    msg.set_content("Pay the invoice to account 1234.")
    raw = signed(world, msg).replace(b"account 1234", b"account 6666")  # altered after signing
    (tmp_path / "forged.eml").write_bytes(raw)
    run = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(world["inbound"]), "--helo", "evil.test",
                          "--from", "x@evil.test", "--to", "help@inbox.test", "--data", str(tmp_path / "forged.eml")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    data = webhook_for(world, "Forged")["data"]
    assert (data["dkim"], data["dmarc"]) == ("fail", "fail")
    assert data["spf"] == "none"  # evil.test publishes no SPF
    sdk(world)
    assert resend.Emails.Receiving.get(data["email_id"])["verdicts"]["dmarc_policy"] == "reject"


def test_unknown_domain_is_refused_at_rcpt_and_bounces_keep_their_reply(world, receiving):
    with smtplib.SMTP("127.0.0.1", world["inbound"], timeout=30) as s:
        s.ehlo("mail.sender.test")
        s.mail("ann@sender.test")
        code, text = s.rcpt("someone@not-ours.test")
        assert (code, text.decode()) == (550, "5.7.1 not-ours.test does not receive mail here")
        code, text = s.rcpt("b+not-a-token@bounces.acme.test")
        assert code == 550 and text.startswith(b"5.1.1")
        assert s.rcpt("anyone@inbox.test")[0] == 250  # any address at a receiving domain


def test_message_over_the_size_limit_is_refused(world, receiving):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@sender.test", "help@inbox.test", "Too big"
    msg.set_content("x" * 100)
    msg.add_attachment(os.urandom(MAX_BYTES), maintype="application", subtype="octet-stream", filename="big.bin")
    with pytest.raises(smtplib.SMTPException) as exc:
        smtp_send(world, msg.as_bytes(), ["help@inbox.test"])
    assert getattr(exc.value, "smtp_code", None) == 552


def test_a_rule_forwards_dkim_signed_and_picks_the_webhooks(world, receiving):
    api, sid, did = world["api"], world["sid"], world["domain"]["id"]
    rules = f"/api/email/services/{sid}/receiving-rules"
    # forwards are signed by the domain: a service whose receiving domain is not verified yet cannot forward
    fresh = api.create_service("fresh")
    fresh_did = api.admin("POST", f"/api/email/services/{fresh}/domains", json={"domain": "fresh.test"}).json()["id"]
    assert api.admin("PATCH", f"/api/email/services/{fresh}/domains/{fresh_did}", json={"receiving": True}).status_code == 200
    r = api.admin("POST", f"/api/email/services/{fresh}/receiving-rules",
                  json={"pattern": "sales@fresh.test", "forward_to": ["boss@example.com"]})
    assert r.status_code == 400 and "verified" in r.json()["error"]
    with smtplib.SMTP("127.0.0.1", world["inbound"], timeout=30) as s:  # its mail waits at the sender meanwhile
        s.ehlo("mail.sender.test")
        s.mail("ann@sender.test")
        assert s.rcpt("sales@fresh.test")[0] == 451 and s.rcpt("x@nobody-here.test")[0] == 550
    for bad, field in (({"pattern": "sales"}, "pattern"), ({"pattern": "*@x.test", "webhook_ids": ["nope"]}, "webhook_ids"),
                       ({"pattern": "*@x.test", "forward_to": ["loop@inbox.test"]}, "forward_to"),
                       ({"pattern": "*@x.test", "forward_to": ["not an address"]}, "forward_to")):
        r = api.admin("POST", rules, json=bad)
        assert r.status_code == 400 and r.json()["error"].startswith(field), (bad, r.text)
    sales_hooks = Receiver()
    try:
        hook = api.admin("POST", f"/api/email/services/{sid}/webhooks",
                         json={"url": sales_hooks.url, "events": ["email.received"]}).json()
        r = api.admin("POST", rules, json={"pattern": "sales@inbox.test", "webhook_ids": [hook["id"]],
                                           "forward_to": ["Boss <boss@example.com>"]})
        assert r.status_code == 201, r.text
        assert api.admin("GET", rules).json()["data"] == [r.json()]

        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "ann@sender.test", "Sales <sales@inbox.test>", "Forward me"
        msg["Message-ID"] = "<fw1@sender.test>"
        msg.set_content("a lead")
        smtp_send(world, msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")), ["sales@inbox.test"])

        [fwd] = world["sink"].wait_for(lambda m: "boss@example.com" in m.rcpt_tos, timeout=60)
        assert b"a lead" in fwd.data and fwd.message["Subject"] == "Forward me"
        assert fwd.mail_from.endswith("@bounces.inbox.test")  # the envelope sender is rewritten to our domain
        assert dkim_results(fwd.data, world["dns"].address) == [True, True]
        assert "d=inbox.test" in fwd.message["DKIM-Signature"].replace(" ", "")
        req = sales_hooks.wait(1)[0]
        data = Webhook(hook["secret"]).verify(req["body"], {k: req["headers"][k] for k in
                                                            ("webhook-id", "webhook-timestamp", "webhook-signature")})["data"]
        assert data["subject"] == "Forward me" and len(data["forwards"]) == 1
        # the rule chose its webhook: the service's other endpoint gets the next message, not this one
        msg.replace_header("Subject", "After the forward")
        msg.replace_header("To", "help@inbox.test")
        smtp_send(world, bytes(msg), ["help@inbox.test"])
        webhook_for(world, "After the forward")
        assert not any(b'"subject":"Forward me"' in x["body"] for x in world["hooks"].received)
        assert api.admin("DELETE", f"{rules}/{r.json()['id']}").status_code == 204
        assert api.admin("GET", f"{rules}/{r.json()['id']}").status_code == 404
    finally:
        sales_hooks.stop()


@pytest.mark.browser
def test_dashboard_shows_received_mail_with_its_html_sandboxed(world, receiving, browser):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@sender.test", "help@inbox.test", "Dashboard <check>"
    msg.set_content("plain words")
    msg.add_alternative('<p id="shown">rich words</p><script>alert("script")</script>'
                        '<img src="x" onerror="alert(\'img\')">', subtype="html")
    msg.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf", filename="t.pdf")
    smtp_send(world, signed(world, msg), ["help@inbox.test"])
    email_id = webhook_for(world, "Dashboard <check>")["data"]["email_id"]

    context = browser.new_context(base_url=world["proc"].url)
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto("/")
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/services")
        page.goto(f"/services/{world['sid']}/received")
        page.get_by_role("link", name="Dashboard <check>").click()
        page.wait_for_url(f"**/received/{email_id}")
        main = page.inner_text("main")
        assert "SPF pass" in main and "DKIM pass" in main and "DMARC pass" in main and "plain words" in main
        frame = page.locator("iframe.mail-html")
        assert frame.get_attribute("sandbox") == ""
        assert page.frame_locator("iframe.mail-html").locator("#shown").inner_text() == "rich words"
        with page.expect_download() as download:
            page.get_by_role("link", name="t.pdf").click()
        assert open(download.value.path(), "rb").read() == b"%PDF-1.4 tiny"
        assert dialogs == []  # neither the script nor the onerror handler ran
        # a domain's page turns receiving on: the MX record joins the records to publish
        d = world["api"].admin("POST", f"/api/email/services/{world['sid']}/domains", json={"domain": "desk.test"}).json()
        page.goto(f"/services/{world['sid']}/domains/{d['id']}")
        assert "RECEIVING" not in page.inner_text("table.records")
        page.get_by_role("button", name="Receive mail").click()
        page.wait_for_load_state()
        assert "RECEIVING" in page.inner_text("table.records") and page.get_by_role("button", name="Stop receiving").count() == 1
    finally:
        context.close()


def test_a_forward_goes_out_as_the_services_other_mail_does():
    """A service that requires verified TLS has its forwards required to use it too."""
    keys = {"rsa_selector": "plra", "rsa_private_sealed": "x", "rsa_public_b64": "AAAA",
            "ed_selector": "plea", "ed_private_sealed": "x", "ed_public_b64": "BBBB"}
    domain = ev.DomainSaved(workspace_id="w", service_id="s", domain_id="d", domain="acme.test",
                            created_at=ev.utcnow(), **keys)
    for required in (True, False):
        svc = ev.ServiceSaved(workspace_id="w", service_id="s", name="app", created_at=ev.utcnow(), require_tls=required)
        req = forward_request(svc, domain, "r1", "fwd@acme.test", "hi", b"Subject: hi\r\n\r\nbody", "ann@example.com")
        assert req.require_tls is required
