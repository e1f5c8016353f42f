"""The rules of outbound TLS that need no network: MTA-STS TXT and policy parsing and MX
pattern matching (RFC 8461), and DANE certificate matching (RFC 7672)."""
from __future__ import annotations

import asyncio
import datetime
import hashlib
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.relay.senders import dane, mta_sts
from shared import dns_lookup
from shared.settings import Settings
from tests.support.cert_authority import CertAuthority
from tests.support.dns_server import DnsServer
from tests.support.file_server import FileServer


def test_txt_id_needs_exactly_one_sts_record_with_an_id():
    assert mta_sts.txt_id(["v=STSv1; id=2026-01-01"]) is None  # not alphanumeric
    assert mta_sts.txt_id(["v=STSv1; id=abc123;"]) == "abc123"
    assert mta_sts.txt_id(["v=STSv1; id=a", "v=STSv1; id=b"]) is None
    assert mta_sts.txt_id(["v=spf1 -all"]) is None


def test_policy_parse_and_mx_patterns():
    p = mta_sts.parse("version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 999999999\n",
                      "example.com", "x")
    assert p.mode == "enforce" and p.max_age == mta_sts.MAX_AGE_LIMIT
    assert p.allows("MAIL.example.com.") and p.allows("mx1.example.net")
    assert not p.allows("a.b.example.net") and not p.allows("example.net") and not p.allows("evil-example.com")


@pytest.mark.parametrize("text, why", [("version: STSv2\nmode: enforce\nmx: a\nmax_age: 1", "version"),
                                       ("version: STSv1\nmode: strict\nmx: a\nmax_age: 1", "mode"),
                                       ("version: STSv1\nmode: enforce\nmax_age: 1", "mx"),
                                       ("version: STSv1\nmode: enforce\nmx: a\nmax_age: soon", "max_age")])
def test_a_bad_policy_is_refused_naming_the_field(text, why):
    with pytest.raises(ValueError, match=why):
        mta_sts.parse(text, "example.com", "x")


def _spki(cert) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_dane_ee_and_ta_matching():
    ca, other = CertAuthority(), CertAuthority("other")
    leaf, _ = ca.issue("mx.example.com")
    ee = dane.Tlsa(3, 1, 1, hashlib.sha256(_spki(leaf)).digest())
    ee512 = dane.Tlsa(3, 0, 2, hashlib.sha512(leaf.public_bytes(serialization.Encoding.DER)).digest())
    ta = dane.Tlsa(2, 1, 0, _spki(ca.cert))
    assert dane.check((ee,), [leaf], "whatever.example") is None  # DANE-EE ignores names
    assert dane.check((ee512,), [leaf], "mx.example.com") is None
    assert dane.check((ta,), [leaf, ca.cert], "mx.example.com") is None
    assert "does not name" in dane.check((ta,), [leaf, ca.cert], "mx.other.example")
    assert "no TLSA record" in dane.check((ta,), [leaf], "mx.example.com")  # the anchor was not sent
    forged, _ = other.issue("mx.example.com")
    assert "does not lead" in dane.check((ta,), [forged, ca.cert], "mx.example.com")
    assert not dane.usable(dane.Tlsa(1, 1, 1, b"")) and dane.usable(ee)


def signed_by(issuer: x509.Certificate, issuer_key, name: str) -> x509.Certificate:
    """A certificate for ``name`` signed with ``issuer_key``, naming ``issuer`` as its issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(issuer_key, hashes.SHA256()))


def test_dane_ta_accepts_only_a_chain_of_cas_from_the_anchor():
    """A DANE-TA record naming a public CA: anyone holding an ordinary certificate of that CA
    must not be able to sign one for the MX host with it."""
    ca = CertAuthority()
    ta = dane.Tlsa(2, 1, 1, hashlib.sha256(_spki(ca.cert)).digest())
    attacker, attacker_key = ca.issue("attacker.example")  # CA:FALSE, as a CA's customers get
    forged = signed_by(attacker, attacker_key, "mx.example.com")
    assert "does not lead" in dane.check((ta,), [forged, attacker, ca.cert], "mx.example.com")


def test_a_policy_host_on_a_private_address_is_not_fetched_from():
    """A domain could point mta-sts.<domain> at the relay's own network: nothing is requested
    there unless the operator allows private addresses (POSTLINE_WEBHOOK_ALLOW_PRIVATE)."""
    ca, dns = CertAuthority(), DnsServer().start()
    server = FileServer(tls=ca.server_context("mta-sts.inside.test")[0])
    try:
        dns.txt("_mta-sts.inside.test", "v=STSv1; id=1")
        dns.a("mta-sts.inside.test", "127.0.0.1")
        server.serve("/.well-known/mta-sts.txt", b"version: STSv1\nmode: enforce\nmx: mx.inside.test\nmax_age: 60\n",
                     headers={"Content-Type": "text/plain"})
        context = ssl.create_default_context(cadata=ca.pem.decode())

        def lookup(allow: bool) -> mta_sts.Policy | None:
            settings = Settings(mta_sts_port=server.port, webhook_allow_private=allow)
            return asyncio.run(mta_sts.MtaSts(settings, dns_lookup.resolver(dns.address), context).policy("inside.test"))

        assert lookup(False) is None and server.requests == []
        fetched = lookup(True)
        assert fetched is not None and fetched.mode == "enforce" and len(server.requests) == 1
    finally:
        server.stop()
        dns.stop()


def test_a_policy_is_refreshed_before_it_lapses_and_failures_are_not_retried_per_message(monkeypatch):
    """RFC 8461 §3.3: a cached policy is fetched again before it expires (an expired one at
    once, not at the next check); a failed fetch waits for the next check like a success."""
    ca, dns = CertAuthority(), DnsServer().start()
    server = FileServer(tls=ca.server_context("mta-sts.acme.test", "mta-sts.gone.test")[0])
    clock = [1000.0]
    monkeypatch.setattr(mta_sts.time, "monotonic", lambda: clock[0])
    try:
        dns.txt("_mta-sts.acme.test", "v=STSv1; id=1")
        dns.a("mta-sts.acme.test", "127.0.0.1")
        server.serve("/.well-known/mta-sts.txt", b"version: STSv1\nmode: enforce\nmx: mx.acme.test\nmax_age: 100\n",
                     headers={"Content-Type": "text/plain"}, host="mta-sts.acme.test")
        settings = Settings(mta_sts_port=server.port, webhook_allow_private=True)
        sts = mta_sts.MtaSts(settings, dns_lookup.resolver(dns.address), ssl.create_default_context(cadata=ca.pem.decode()))

        def policy_at(t: float, domain: str = "acme.test") -> mta_sts.Policy | None:
            clock[0] = 1000.0 + t
            return asyncio.run(sts.policy(domain))

        assert policy_at(0).mode == "enforce" and len(server.requests) == 1
        assert policy_at(50) is not None and len(server.requests) == 1  # cached
        assert policy_at(150) is not None and len(server.requests) == 2  # expired at 100: fetched again at once
        dns.txt("_mta-sts.gone.test", "v=STSv1; id=7")
        dns.a("mta-sts.gone.test", "127.0.0.1")  # served nothing: 404
        assert policy_at(200, "gone.test") is None and len(server.requests) == 3
        assert policy_at(210, "gone.test") is None and len(server.requests) == 3  # not fetched per message
        assert policy_at(200 + mta_sts.RECHECK_SECONDS + 1, "gone.test") is None and len(server.requests) == 4
    finally:
        server.stop()
        dns.stop()
