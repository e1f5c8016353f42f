"""DKIM signing as the relay does it: many messages signed at once (they share one batch on
the signing pool) each carry their own valid RSA and Ed25519 signatures, checked by dkimpy
against keys published on a real DNS server; the synchronous path signs the same way."""
from __future__ import annotations

import asyncio

import dkim

from services.relay.mime import build
from services.relay.signing import Signer, parse_message
from shared import events as ev
from shared.dkim_keys import generate, split_txt, txt_value
from tests.support.dns_server import DnsServer
from tests.support.postline import dkim_results

MASTER = b"m" * 32


def domain_with_published_keys(dns: DnsServer) -> ev.DomainSaved:
    domain_id = ev.new_id()
    dom = ev.DomainSaved(workspace_id="w", service_id="s", domain_id=domain_id, domain="acme.test", verified=True,
                         created_at=ev.utcnow(), **generate(MASTER, domain_id))
    dns.txt(f"{dom.rsa_selector}._domainkey.acme.test", split_txt(txt_value("rsa", dom.rsa_public_b64)))
    dns.txt(f"{dom.ed_selector}._domainkey.acme.test", split_txt(txt_value("ed25519", dom.ed_public_b64)))
    return dom


def verifies(raw: bytes, dns: DnsServer) -> list[bool]:
    try:
        return dkim_results(raw, dns.address)
    except dkim.ValidationError:  # dkimpy raises on a body hash mismatch
        return [False]


def message(i: int) -> bytes:
    req = ev.SendRequested(workspace_id="w", service_id="s", email_id=ev.new_id(), mode="production",
                           sending_domain="acme.test", to=[f"user{i}@example.com"],
                           subject=f"Receipt #{i} — ünïcode",
                           text=f"Thanks for order {i}\n.a dotted line", html=f"<p>order <b>{i}</b></p>",
                           recipients=[f"user{i}@example.com"], **{"from": "Acme <billing@acme.test>"})
    return build(req, "acme.test")


async def test_messages_signed_together_each_verify_and_tampering_fails():
    dns = DnsServer().start()
    signer = Signer(MASTER)
    try:
        dom = domain_with_published_keys(dns)
        raws = [message(i) for i in range(24)]
        signed = await asyncio.gather(*(signer.sign_async(raw, dom) for raw in raws))
        for raw, out in zip(raws, signed):
            assert out.endswith(raw)
            assert dkim_results(out, dns.address) == [True, True]
        tampered = signed[0].replace(b"To: user0@", b"To: user9@", 1)
        assert tampered != signed[0]
        assert dkim_results(tampered, dns.address) == [False, False]
        # each message has its own signatures: message 1's on message 2's content fail
        assert verifies(signed[1].replace(raws[1], raws[2]), dns) in ([False], [False, False])
        assert dkim_results(signer.sign(raws[3], dom), dns.address) == [True, True]
    finally:
        signer.close()
        dns.stop()


def test_parsing_only_the_headers_of_a_crlf_message_is_what_dkimpy_parses():
    req = ev.SendRequested(workspace_id="w", service_id="s", email_id="e1", mode="production", to=["ann@example.com"],
                           recipients=["ann@example.com"], subject="Hi", **{"from": "a@acme.test"},
                           html="<p>a</p>\n\n.\n<table><tr><td>x</td></tr></table>\n")
    built = build(req, "acme.test")
    for raw in (built, built + b"\r\n\r\n", built.replace(b"\r\n", b"\n"), b"Subject: no body\r\n",
                b"Subject: x\r\n\r\nbare\nLF\r\nmixed\r\n"):
        assert parse_message(raw) == dkim.rfc822_parse(raw)
