"""Inline parts (``content_id``) in the MIME the relay builds (services/relay/mime.py): a
``multipart/related`` around the body with ``Content-ID`` parts the HTML shows as ``cid:``,
parsed back with the standard library's ``email`` package."""
from __future__ import annotations

import base64
import email
import email.policy

from services.relay.mime import build
from shared import events as ev

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
PDF = b"%PDF-1.4\n% invoice\n"


def request(html: str | None, attachments: list[ev.Attachment]) -> ev.SendRequested:
    return ev.SendRequested(workspace_id="w", service_id="s", email_id=ev.new_id(), mode="production",
                            sending_domain="acme.test", to=["ann@example.com"], recipients=["ann@example.com"],
                            subject="Your invoice", text="See the logo.", html=html, attachments=attachments,
                            **{"from": "Acme <a@acme.test>"})


def parsed(req: ev.SendRequested) -> email.message.EmailMessage:
    raw = build(req, "acme.test")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")) and b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects and all(not part.defects for part in msg.walk())
    return msg


def logo(cid: str = "logo@acme.test") -> ev.Attachment:
    return ev.Attachment(filename="logo.png", content_type="image/png", content_base64=base64.b64encode(PNG).decode(),
                         content_id=cid)


def invoice() -> ev.Attachment:
    return ev.Attachment(filename="invoice.pdf", content_type="application/pdf",
                         content_base64=base64.b64encode(PDF).decode())


def test_inline_part_and_attachment():
    msg = parsed(request('<p><img src="cid:logo@acme.test" alt="Acme"></p>', [logo(), invoice()]))
    assert msg.get_content_type() == "multipart/mixed"
    related, attached = msg.get_payload()
    assert related.get_content_type() == "multipart/related"
    body, image = related.get_payload()
    assert body.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in body.get_payload()] == ["text/plain", "text/html"]
    assert image["Content-ID"] == "<logo@acme.test>" and image.get_content_disposition() == "inline"
    assert image.get_content_type() == "image/png" and image.get_content() == PNG
    assert 'src="cid:logo@acme.test"' in msg.get_body(("html",)).get_content()
    assert attached.get_content_disposition() == "attachment" and attached.get_filename() == "invoice.pdf"
    assert attached["Content-ID"] is None and attached.get_content() == PDF
    # what a mail client does: the HTML body comes from the related part, the PDF is the one attachment
    assert [a.get_filename() for a in msg.iter_attachments()] == ["invoice.pdf"]


def test_only_inline_parts_make_related_the_top():
    msg = parsed(request('<img src="cid:a"><img src="cid:b">', [logo("a"), logo("b")]))
    assert msg.get_content_type() == "multipart/related"
    assert [p["Content-ID"] for p in msg.get_payload()[1:]] == ["<a>", "<b>"]


def test_without_html_an_inline_part_follows_the_text():
    """No HTML refers to it: no multipart/related, the part follows the text in multipart/mixed."""
    msg = parsed(request(None, [logo()]))
    assert msg.get_content_type() == "multipart/mixed"
    text, image = msg.get_payload()
    assert text.get_content_type() == "text/plain"
    assert image.get_content_disposition() == "inline" and image["Content-ID"] == "<logo@acme.test>"
