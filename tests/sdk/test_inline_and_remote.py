"""Inline images (``content_id``) and remote attachments (``path``) through Resend's SDKs,
unchanged but for the base URL (issue 28): the Python SDK's ``content_id`` and
``inline_content_id`` and the Node SDK's ``contentId``; ``path`` fetched from a real HTTP
server on loopback (sdk_world sets POSTLINE_WEBHOOK_ALLOW_PRIVATE, as for its webhook
receiver). Checked at the real SMTP sink after relay delivery and DKIM signing, parsed back
with the standard library."""
from __future__ import annotations

import base64

import pytest
import resend
from resend.exceptions import ResendError

from tests.support.file_server import FileServer
from tests.support.postline import dkim_results

FROM = "Acme <hello@acme.test>"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
PDF = b"%PDF-1.4\n% a remote invoice\n"


@pytest.fixture(scope="module")
def files():
    server = FileServer()
    server.serve("/files/invoice.pdf", PDF, headers={"Content-Type": "application/pdf"})
    yield server
    server.stop()


def check_delivered(sdk_world, email_id: str, cid: str) -> None:
    """At the sink: signed, related(alternative, inline image) inside mixed with the fetched PDF."""
    got = sdk_world.mail_for(email_id)
    assert dkim_results(got.data, sdk_world.dns.address) == [True, True]
    msg = got.message
    assert msg.get_content_type() == "multipart/mixed" and not msg.defects
    related, pdf = msg.get_payload()
    assert related.get_content_type() == "multipart/related"
    alternative, image = related.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    assert image["Content-ID"] == f"<{cid}>" and image.get_content_disposition() == "inline"
    assert image.get_content_type() == "image/png" and image.get_content() == PNG
    assert f'src="cid:{cid}"' in msg.get_body(("html",)).get_content()
    assert (pdf.get_filename(), pdf.get_content_type(), pdf.get_content_disposition()) == (
        "invoice.pdf", "application/pdf", "attachment")
    assert pdf.get_content() == PDF


def test_python_sdk_inline_image_and_remote_attachment(sdk_world, files):
    resend.api_key, resend.api_url = sdk_world.key, sdk_world.url
    sent = resend.Emails.send({
        "from": FROM, "to": ["ann@example.com"], "subject": "Inline and remote (py)",
        "html": '<p><img src="cid:logo" alt="Acme"> Your invoice is attached.</p>',
        "attachments": [{"filename": "logo.png", "content": list(PNG), "content_id": "logo"},
                        {"path": files.url("/files/invoice.pdf")}],
    })
    check_delivered(sdk_world, sent["id"], "logo")


def test_python_sdk_inline_content_id_alias(sdk_world):
    resend.api_key, resend.api_url = sdk_world.key, sdk_world.url
    sent = resend.Emails.send({
        "from": FROM, "to": ["ann@example.com"], "subject": "Inline alias (py)", "html": '<img src="cid:badge">',
        "attachments": [{"filename": "badge.png", "content": base64.b64encode(PNG).decode(),
                         "inline_content_id": "badge"}],
    })
    msg = sdk_world.mail_for(sent["id"]).message
    assert msg.get_content_type() == "multipart/related" and msg.get_payload()[1]["Content-ID"] == "<badge>"


def test_python_sdk_unfetchable_path_is_a_422_naming_it(sdk_world, files):
    resend.api_key, resend.api_url = sdk_world.key, sdk_world.url
    with pytest.raises(ResendError) as exc:
        resend.Emails.send({"from": FROM, "to": ["ann@example.com"], "subject": "x", "text": "x",
                            "attachments": [{"filename": "a.txt", "content": "aGk="},
                                            {"path": files.url("/files/missing.pdf")}]})
    assert exc.value.code == 422 and str(exc.value.message).startswith("attachments[1].path: ")
    assert "answered 404" in str(exc.value.message)


def test_node_sdk_inline_image_and_remote_attachment(node, sdk_world, files):
    r = node("send", email={
        "from": FROM, "to": ["ann@example.com"], "subject": "Inline and remote (node)",
        "html": '<p><img src="cid:logo-node"> Your invoice is attached.</p>',
        "attachments": [{"filename": "logo.png", "content": base64.b64encode(PNG).decode(), "contentId": "logo-node"},
                        {"path": files.url("/files/invoice.pdf"), "filename": "invoice.pdf"}],
    })
    assert r["error"] is None, r
    check_delivered(sdk_world, r["data"]["id"], "logo-node")
