"""Outbound TLS in MX mode against real STARTTLS sinks (certificates from a test CA), a
real DNS server (MX, A, MTA-STS TXT, TLSA with and without the AD flag) and a real HTTPS
server for MTA-STS policies: enforce mode, testing mode, require_tls per service and per
send, DANE-EE and DANE-TA; the TLS used is on the `delivered` event, and a session TLS was
required for never carries the message in clear (the sinks record no DATA)."""
from __future__ import annotations

import asyncio
import hashlib
import re

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.broker import free_port
from tests.support.cert_authority import CertAuthority
from tests.support.dns_server import DnsServer
from tests.support.file_server import FileServer
from tests.services.api.dashboard.support import sign_in
from tests.support.postline import ADMIN_TOKEN, Api, PostlineProcess, production_service
from tests.support.smtp_sink import SmtpSink

BODY = {"from": "Acme <hello@acme.test>", "subject": "Hi", "text": "body"}
POLICY_DOMAINS = ("good.test", "bad.test", "unlisted.test", "testing.test")


def policy(mode: str, *mx: str) -> bytes:
    return ("version: STSv1\r\nmode: " + mode + "\r\n" + "".join(f"mx: {m}\r\n" for m in mx)
            + "max_age: 86400\r\n").encode()


def spki_sha256(cert) -> bytes:
    return hashlib.sha256(cert.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)).digest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    ca, other_ca = CertAuthority(), CertAuthority("not trusted by the relay")
    dns = DnsServer().start()
    policies = FileServer(tls=ca.server_context(*(f"mta-sts.{d}" for d in POLICY_DOMAINS))[0])
    port = free_port()
    sinks = {
        "good": SmtpSink(host="127.0.0.2", port=port, starttls="offer", tls_context=ca.server_context("mx.good.test")[0]),
        "wrong": SmtpSink(host="127.0.0.3", port=port, starttls="offer", tls_context=ca.server_context("other.test")[0]),
        "plain": SmtpSink(host="127.0.0.4", port=port),
    }
    dane_ctx, dane_leaf = other_ca.server_context("mx.dane.test", "mx.danata.test", "mx.danebad.test",
                                                 "mx.daneclear.test", chain=True)
    sinks["dane"] = SmtpSink(host="127.0.0.5", port=port, starttls="offer", tls_context=dane_ctx)
    for sink in sinks.values():
        sink.start()
    for name, ip in {"mx.good.test": "127.0.0.2", "mx.bad.test": "127.0.0.3", "mx.plain.test": "127.0.0.4",
                     "mx.dane.test": "127.0.0.5", "mx.danata.test": "127.0.0.5", "mx.danebad.test": "127.0.0.5",
                     "mx.daneclear.test": "127.0.0.5", "mx.tlsafail.test": "127.0.0.4",
                     "mx.unusable.test": "127.0.0.4", "mx.unusabletls.test": "127.0.0.5"}.items():
        dns.a(name, ip)
    dns.a("mx.tlsafailsigned.test", "127.0.0.5", authenticated=True)  # a signed zone
    for domain, mx in {"good.test": "mx.good.test", "bad.test": "mx.bad.test", "unlisted.test": "mx.good.test",
                       "testing.test": "mx.bad.test", "plain.test": "mx.plain.test", "pkix.test": "mx.good.test",
                       "dane.test": "mx.dane.test", "danata.test": "mx.danata.test",
                       "danebad.test": "mx.danebad.test", "daneclear.test": "mx.daneclear.test",
                       "tlsafail.test": "mx.tlsafail.test", "tlsafailsigned.test": "mx.tlsafailsigned.test",
                       "unusable.test": "mx.unusable.test", "unusabletls.test": "mx.unusabletls.test"}.items():
        dns.mx(domain, (10, mx))
    for domain, body in {"good.test": policy("enforce", "mx.good.test"), "bad.test": policy("enforce", "*.bad.test"),
                         "unlisted.test": policy("enforce", "mail.unlisted.test"),
                         "testing.test": policy("testing", "mx.bad.test")}.items():
        dns.txt(f"_mta-sts.{domain}", "v=STSv1; id=2026120601")
        dns.a(f"mta-sts.{domain}", "127.0.0.1")
        policies.serve("/.well-known/mta-sts.txt", body, headers={"Content-Type": "text/plain"}, host=f"mta-sts.{domain}")
    dns.tlsa("_25._tcp.mx.dane.test", (3, 1, 1, spki_sha256(dane_leaf)))
    dns.tlsa("_25._tcp.mx.danata.test", (2, 0, 1, hashlib.sha256(other_ca.cert.public_bytes(serialization.Encoding.DER)).digest()))
    dns.tlsa("_25._tcp.mx.danebad.test", (3, 1, 1, b"\x00" * 32))
    dns.tlsa("_25._tcp.mx.daneclear.test", (3, 1, 1, b"\x00" * 32), authenticated=False)
    dns.fail("_25._tcp.mx.tlsafail.test", "TLSA")  # a resolver that cannot answer TLSA queries
    dns.fail("_25._tcp.mx.tlsafailsigned.test", "TLSA")
    for host in ("mx.unusable.test", "mx.unusabletls.test"):  # PKIX-EE(1): not usable for SMTP (RFC 7672 §3.1.3)
        dns.tlsa(f"_25._tcp.{host}", (1, 1, 1, b"\x00" * 32))
    proc = PostlineProcess(tmp / "data", env={
        "POSTLINE_DNS_SERVER": dns.address, "POSTLINE_DELIVERY": "mx", "POSTLINE_MX_PORT": str(port),
        "POSTLINE_OUTBOUND_CA_FILE": str(ca.write(tmp / "ca.pem")), "POSTLINE_MTA_STS_PORT": str(policies.port),
        "POSTLINE_RETRY_SCHEDULE": "3600", "POSTLINE_WORKERS": "2",
        "POSTLINE_WEBHOOK_ALLOW_PRIVATE": "1"}).start()  # the policy server is on loopback  # service changes cross processes
    api = Api(proc.url)
    sid, key = production_service(api, dns)
    yield api, sid, key, sinks
    proc.stop()
    for sink in sinks.values():
        sink.stop()
    policies.stop()
    dns.stop()


def outcome(api: Api, key: str, rcpt: str, status: str, **extra) -> tuple[str, dict]:
    email_id = api.send(key, {**BODY, "to": rcpt, **extra}).json()["id"]
    api.wait_status(key, email_id, rcpt, status)
    events = api.http.get(f"/emails/{email_id}", headers={"Api-Key": key}).json()["events"]
    return email_id, [e for e in events if e["type"] == status][-1]


def carried(sink: SmtpSink, email_id: str) -> bool:
    return any(email_id.encode() in m.data for m in sink.received)


def test_mta_sts_enforce_delivers_over_verified_tls_to_a_listed_mx(world):
    api, _, key, sinks = world
    email_id, delivered = outcome(api, key, "ann@good.test", "delivered")
    assert delivered["tls"]["verified"] == "mta-sts" and delivered["tls"]["version"].startswith("TLSv1.")
    assert delivered["tls"]["cipher"]
    assert [m.tls for m in sinks["good"].received if email_id.encode() in m.data] == [True]


@pytest.mark.parametrize("rcpt, sink, extra, reasons", [
    ("ann@bad.test", "wrong", {}, ["TLS required by MTA-STS policy of bad.test (enforce)", "certificate verify failed"]),
    ("ann@unlisted.test", "good", {}, ["MX mx.good.test is not listed in the MTA-STS policy of unlisted.test"]),
    ("bob@plain.test", "plain", {"require_tls": True}, ["TLS required by require_tls", "does not offer STARTTLS"]),
    ("ann@danebad.test", "dane", {}, ["TLS required by DANE", "no TLSA record of mx.danebad.test matches"]),
    ("ann@tlsafailsigned.test", "dane", {}, ["TLSA lookup for mx.tlsafailsigned.test failed"]),
    ("ann@unusable.test", "plain", {}, ["TLS required by DANE (TLSA records of mx.unusable.test, none of them usable)",
                                        "does not offer STARTTLS"]),
], ids=["mta-sts-certificate-mismatch", "mta-sts-mx-not-listed", "require-tls-per-send-no-starttls", "dane-mismatch",
        "tlsa-lookup-failed-signed-zone", "tlsa-unusable-no-starttls"])
def test_deferred_with_the_reason_and_never_sent_in_clear(world, rcpt, sink, extra, reasons):
    api, _, key, sinks = world
    email_id, deferred = outcome(api, key, rcpt, "deferred", **extra)
    assert all(reason in deferred["smtp_reply"] for reason in reasons), deferred["smtp_reply"]
    assert not carried(sinks[sink], email_id)


@pytest.mark.parametrize("rcpt, sink, verified", [
    ("ann@testing.test", "wrong", "none"),    # MTA-STS testing: delivered, certificate not checked
    ("ann@dane.test", "dane", "dane"),        # DANE-EE: though no CA the relay trusts issued it
    ("ann@danata.test", "dane", "dane"),      # DANE-TA: the server's chain leads to the TLSA's CA
    ("ann@daneclear.test", "dane", "none"),   # TLSA without the AD flag: not trusted, not enforced
    ("ann@unusabletls.test", "dane", "none"),  # TLSA none of them usable: TLS required, certificate not checked
    ("ann@tlsafail.test", "plain", None),     # TLSA lookup failed, unsigned zone: no DANE (here no TLS at all)
], ids=["mta-sts-testing", "dane-ee", "dane-ta", "tlsa-without-ad", "tlsa-unusable", "tlsa-lookup-failed-unsigned-zone"])
def test_delivered_and_how_the_certificate_was_verified(world, rcpt, sink, verified):
    api, _, key, sinks = world
    email_id, delivered = outcome(api, key, rcpt, "delivered")
    assert carried(sinks[sink], email_id)
    if verified is None:
        assert delivered["tls"] is None
    else:
        assert delivered["tls"]["verified"] == verified


def test_without_a_policy_plaintext_is_reported_as_no_tls(world):
    api, _, key, sinks = world
    email_id, delivered = outcome(api, key, "ann@plain.test", "delivered")
    assert delivered["tls"] is None and carried(sinks["plain"], email_id)


def test_require_tls_on_the_service_verifies_pkix_and_defers_plaintext(world):
    api, sid, key, sinks = world
    r = api.admin("PATCH", f"/api/email/services/{sid}", json={"require_tls": True})
    assert r.status_code == 200 and r.json()["require_tls"] is True
    try:
        _, delivered = outcome(api, key, "ann@pkix.test", "delivered")
        assert delivered["tls"]["verified"] == "pkix"
        email_id, deferred = outcome(api, key, "carl@plain.test", "deferred")
        assert "TLS required by require_tls" in deferred["smtp_reply"]
        assert not carried(sinks["plain"], email_id)
        assert api.admin("PATCH", f"/api/email/services/{sid}", json={"require_tls": "yes"}).json()["error"]
    finally:
        api.admin("PATCH", f"/api/email/services/{sid}", json={"require_tls": False})


def test_the_dashboard_timeline_shows_the_tls_used(world):
    api, sid, key, _ = world
    email_id, _ = outcome(api, key, "dora@good.test", "delivered")
    plain_id, _ = outcome(api, key, "dora@plain.test", "delivered")

    async def pages() -> tuple[str, str]:
        async with httpx.AsyncClient(base_url=api.http.base_url) as http:
            await sign_in(http, ADMIN_TOKEN)
            return tuple([(await http.get(f"/services/{sid}/messages/{eid}")).text for eid in (email_id, plain_id)])

    verified, plain = asyncio.run(pages())
    assert re.search(r"<dt>tls</dt><dd>TLSv1\.\d · \S+ · verified: mta-sts</dd>", verified)
    assert "<dt>tls</dt><dd>none (plaintext)</dd>" in plain
