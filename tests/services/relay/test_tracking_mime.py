"""The relay's MIME step with tracking: per-recipient copies with the pixel, rewritten links
and RFC 8058 headers, DKIM-signed over them (dkimpy against a real DNS server); and with
tracking off, exactly the bytes the MIME builder made before tracking existed."""
from __future__ import annotations

import re
from email import message_from_bytes, policy
from types import SimpleNamespace

from services.relay.handler import build_and_sign
from services.relay.mime import build
from services.relay.signing import Signer
from shared import events as ev
from shared.settings import Settings
from shared.tracking import Tokens
from shared.verp import parse_token, unsubscribe_token_of
from tests.services.relay.test_signing import MASTER, domain_with_published_keys
from tests.support.dns_server import DnsServer
from tests.support.postline import dkim_results

HTML = ('<html><body><p>Hi! <a href="https://shop.example/cart?id=7&amp;utm=x#top">your cart</a>, '
        '<a href="mailto:help@acme.test">help</a>, <a href="#faq">faq</a>, '
        '<a data-postline-notrack href="https://acme.test/private">private</a></p></body></html>')
RCPTS = ["ann@example.com", "bob@example.com"]


def request(**tracking) -> ev.SendRequested:
    return ev.SendRequested(workspace_id="w", service_id="svc-1", email_id=ev.new_id(), mode="production",
                            sending_domain="acme.test", to=RCPTS, subject="Your cart", html=HTML,
                            recipients=RCPTS, **tracking, **{"from": "Acme <shop@acme.test>"})


def context(signer: Signer) -> SimpleNamespace:
    settings = Settings(secret_key="k", public_url="https://pl.example", data_dir="/nonexistent")
    settings.__dict__["master_key"] = MASTER  # cached_property: no key file is read or written
    return SimpleNamespace(settings=settings, signer=signer)


async def test_tracking_off_is_exactly_the_untracked_message():
    dns = DnsServer().start()
    signer = Signer(MASTER)
    try:
        dom = domain_with_published_keys(dns)
        req = request()
        raw = await build_and_sign(context(signer), req, dom, RCPTS)
        assert isinstance(raw, bytes)  # one message for every recipient
        assert raw.endswith(build(req, "acme.test"))
        assert raw[:raw.index(b"From: ")].count(b"DKIM-Signature:") == 2
        assert b"List-Unsubscribe" not in raw and b"/t/" not in raw
        assert dkim_results(raw, dns.address) == [True, True]
        unsigned = await build_and_sign(context(signer), req, None, RCPTS)
        assert unsigned == build(req, "postline.localhost")
    finally:
        signer.close()
        dns.stop()


async def test_tracked_copies_per_recipient_signed_over_list_unsubscribe():
    dns = DnsServer().start()
    signer = Signer(MASTER)
    tokens = Tokens(MASTER)
    try:
        dom = domain_with_published_keys(dns)
        req = request(track_opens=True, track_clicks=True, list_unsubscribe=True)
        copies = await build_and_sign(context(signer), req, dom, RCPTS)
        assert sorted(copies) == sorted(RCPTS) and copies[RCPTS[0]] != copies[RCPTS[1]]
        for rcpt, raw in copies.items():
            assert dkim_results(raw, dns.address) == [True, True]
            head = raw.split(b"\r\n\r\n", 1)[0].decode()
            for h in re.findall(r"DKIM-Signature:(.*?)(?=\r\n\S)", head, re.S):
                signed = re.search(r"h=([^;]*)", re.sub(r"\s", "", h)).group(1).split(":")
                assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed
            msg = message_from_bytes(raw, policy=policy.default)
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            unsub, mailto = re.fullmatch(r"<https://pl\.example/t/u/([A-Za-z0-9_-]+)>, <mailto:([^>]+)>",
                                         msg["List-Unsubscribe"]).groups()
            assert tokens.verify(unsub, "unsubscribe").recipient == rcpt
            local, _, host = mailto.partition("@")
            assert host == "bounces.acme.test" and len(local) <= 64
            assert parse_token(MASTER, unsubscribe_token_of(mailto)) == (req.email_id, RCPTS.index(rcpt))
            html = msg.get_body(("html",)).get_content()
            clicks = re.findall(r'href="https://pl\.example/t/c/([A-Za-z0-9_-]+)"', html)
            assert [tokens.verify(c, "click").url for c in clicks] == ["https://shop.example/cart?id=7&utm=x#top"]
            assert all(tokens.verify(c, "click").recipient == rcpt for c in clicks)
            assert 'href="mailto:help@acme.test"' in html and 'href="#faq"' in html
            assert 'href="https://acme.test/private"' in html
            pixel = re.findall(r'<img src="https://pl\.example/t/o/([A-Za-z0-9_-]+)"[^>]*/></body>', html)
            assert len(pixel) == 1 and tokens.verify(pixel[0], "open").email_id == req.email_id
            text = msg.get_body(("plain",)).get_content()
            assert "https://shop.example/cart?id=7&utm=x#top" in text and "/t/c/" not in text and "/t/o/" not in text
            tampered = raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                                   b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click")
            assert dkim_results(tampered, dns.address) == [False, False]
    finally:
        signer.close()
        dns.stop()
