"""Domains: DKIM keys on add, records to publish, verification against a real DNS server."""
from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tests.support.dns_server import DnsServer
from tests.support.inproc import api_runtime


@pytest.fixture
def dns():
    server = DnsServer().start()
    yield server
    server.stop()


def publish(dns: DnsServer, records: list[dict], skip: set[str] = frozenset()) -> None:
    for rec in records:
        if rec["type"] == "TXT" and rec["record"] not in skip:
            dns.txt(rec["name"], rec.get("value_strings") or rec["value"])


async def add_domain(admin, sid: str, name: str = "acme.test") -> dict:
    r = await admin("POST", f"/api/email/services/{sid}/domains", json={"domain": name})
    assert r.status_code == 201, r.text
    return r.json()


async def test_add_domain_returns_records_with_two_dkim_keys(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid = await admin.service()
        d = await add_domain(admin, sid, "Mail.Acme.TEST")
        assert d["domain"] == "mail.acme.test" and d["status"] == "pending"
        kinds = [r["record"] for r in d["records"]]
        assert kinds == ["SPF", "DKIM", "DKIM", "DMARC", "MX", "RETURN_PATH"]
        assert d["records"][4]["name"] == d["records"][5]["name"] == "bounces.mail.acme.test"
        rsa, ed = d["records"][1], d["records"][2]
        assert rsa["name"].endswith("._domainkey.mail.acme.test") and "k=rsa" in rsa["value"]
        assert all(len(s) <= 255 for s in rsa["value_strings"]) and len(rsa["value_strings"]) > 1
        assert "".join(rsa["value_strings"]) == rsa["value"]
        pub = load_der_public_key(base64.b64decode(rsa["value"].split("p=")[1]))
        assert pub.key_size == 2048
        assert "k=ed25519" in ed["value"] and len(base64.b64decode(ed["value"].split("p=")[1])) == 32
        assert d["records"][0]["value"] == f"v=spf1 include:{rt.settings.spf_domain} ~all"
        assert "private" not in str(d).lower()


async def test_verify_published_records(tmp_path, dns):
    async with api_runtime(tmp_path, dns_server=dns.address) as (rt, admin):
        sid = await admin.service()
        d = await add_domain(admin, sid)
        publish(dns, d["records"])
        r = await admin("POST", f"/api/email/services/{sid}/domains/{d['id']}/verify")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["verified"] is True and body["status"] == "verified"
        assert {c["record"]: c["status"] for c in body["checks"]} == {
            "SPF": "found", "DKIM": "found", "DMARC": "found", "RETURN_PATH": "found", "MX": "missing"}
        r = await admin("PATCH", f"/api/email/services/{sid}", json={"mode": "production"})
        assert r.status_code == 200 and r.json()["mode"] == "production"


async def test_verify_reports_mismatch_and_missing(tmp_path, dns):
    async with api_runtime(tmp_path, dns_server=dns.address) as (rt, admin):
        sid = await admin.service()
        d = await add_domain(admin, sid)
        publish(dns, d["records"], skip={"DKIM", "DMARC"})
        rsa = d["records"][1]
        dns.txt(rsa["name"], "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong")
        body = (await admin("POST", f"/api/email/services/{sid}/domains/{d['id']}/verify")).json()
        checks = {c["name"]: c for c in body["checks"]}
        assert body["verified"] is False
        assert checks[rsa["name"]]["status"] == "mismatch"
        assert checks[rsa["name"]]["seen"] == ["v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong"]
        assert checks[d["records"][2]["name"]]["status"] == "missing"
        assert checks[f"_dmarc.{d['domain']}"]["status"] == "missing"
        assert checks[d["domain"]]["status"] == "found"


async def test_spf_without_our_include_is_a_mismatch(tmp_path, dns):
    async with api_runtime(tmp_path, dns_server=dns.address) as (rt, admin):
        sid = await admin.service()
        d = await add_domain(admin, sid)
        publish(dns, d["records"], skip={"SPF"})
        dns.txt(d["domain"], "v=spf1 include:_spf.google.com ~all", "google-site-verification=abc")
        body = (await admin("POST", f"/api/email/services/{sid}/domains/{d['id']}/verify")).json()
        assert body["verified"] is False
        assert [c["status"] for c in body["checks"] if c["record"] == "SPF"] == ["mismatch"]


async def test_production_needs_a_verified_domain(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid = await admin.service()
        await add_domain(admin, sid)
        r = await admin("PATCH", f"/api/email/services/{sid}", json={"mode": "production"})
        assert r.status_code == 400 and "verified domain" in r.json()["error"]
        assert (await admin("GET", f"/api/email/services/{sid}")).json()["mode"] == "sandbox"


async def test_duplicate_and_invalid_domains(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid = await admin.service()
        await add_domain(admin, sid)
        r = await admin("POST", f"/api/email/services/{sid}/domains", json={"domain": "acme.test"})
        assert r.status_code == 409 and "domain" in r.json()["error"]
        too_long = ".".join(["a" * 60] * 4) + ".com"  # 247: its DKIM record names would pass DNS's 253
        for bad in ["acme", "-acme.test", "acme..test", "a b.test", "acme.test/x", too_long,
                    "xn--zz.example"]:  # no A-label: the send API would refuse every address at it
            r = await admin("POST", f"/api/email/services/{sid}/domains", json={"domain": bad})
            assert r.status_code == 400 and r.json()["error"].startswith("domain"), bad
        idn = await add_domain(admin, sid, "bücher.test")
        assert idn["domain"] == "xn--bcher-kva.test"
