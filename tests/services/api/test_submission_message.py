"""The submitted-message rules (services/api/submission/message.py and replies.py) on their
own: what is refused with which reply, and that what is kept is kept byte for byte."""
from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from services.api.schemas import SendEmail
from services.api.submission import message, replies
from services.api.submission.server import auth_needs_tls

BODY = "Content-Type: text/plain; charset=utf-8\r\n\r\nH\u00e9llo\r\n.. a dotted line\r\n\r\n-- \r\nsig\r\n".encode()
HEAD = (b"From: =?utf-8?q?Acme_=C3=A9?= <hello@acme.test>\r\nTo: Bob <bob@example.com>,\r\n carol@example.com\r\n"
        b"Cc: dan@example.com\r\nBcc: eve@example.com\r\nSubject: =?utf-8?q?hi=0D=0ABcc:_x@evil.test?=\r\n"
        b"X-Postline-Tags: welcome, beta\r\nX-App: 1\r\nMIME-Version: 1.0\r\n")
RCPTS = ["bob@example.com", "carol@example.com", "dan@example.com", "eve@example.com"]


def parse(raw: bytes, rcpts=RCPTS) -> message.Submitted:
    return message.parse(raw, rcpts)


def refused(raw: bytes, rcpts=RCPTS) -> str:
    with pytest.raises(message.Refused) as exc:
        parse(raw, rcpts)
    return exc.value.reply


def test_envelope_recipients_are_sorted_by_the_header_and_bcc_is_the_rest():
    sub = parse(HEAD + b"\r\n" + b"x\r\n")
    assert sub.send["to"] == ["bob@example.com", "carol@example.com"]
    assert sub.send["cc"] == ["dan@example.com"]
    assert sub.send["bcc"] == ["eve@example.com"]
    assert sub.send["tags"] == ["welcome", "beta"]
    assert sub.send["from"] == "Acme é <hello@acme.test>"


def test_a_header_naming_nobody_of_the_envelope_still_gives_a_recipient_list():
    sub = parse(b"From: a@acme.test\r\nTo: undisclosed-recipients:;\r\nSubject: s\r\n\r\nx\r\n", ["z@example.com"])
    assert sub.send["to"] == ["z@example.com"] and sub.send["bcc"] is None


def test_a_decoded_line_break_in_the_subject_is_the_apis_error():
    sub = parse(HEAD + b"\r\nx\r\n")
    with pytest.raises(ValidationError) as exc:
        SendEmail.model_validate(sub.send)
    assert replies.invalid(exc.value) == "550 5.7.1 subject: must not contain line breaks or NUL"


def test_finalize_keeps_the_body_and_headers_byte_for_byte_and_drops_bcc_and_postline_fields():
    head = HEAD.replace(b"Subject: =?utf-8?q?hi=0D=0ABcc:_x@evil.test?=", b"Subject: =?utf-8?q?hi_=C3=A9?=")
    sub = parse(head + b"\r\n" + BODY)
    out = message.finalize(sub, sub.send["from"], "<id@acme.test>", 0)
    assert out.endswith(b"\r\n\r\n" + BODY)
    assert out.startswith(b"Message-ID: <id@acme.test>\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n" + head.split(b"Bcc")[0])
    assert b"Bcc" not in out and b"X-Postline" not in out and b"eve@" not in out
    assert b"Subject: =?utf-8?q?hi_=C3=A9?=\r\nX-App: 1\r\nMIME-Version: 1.0\r\n\r\n" in out


def test_finalize_keeps_a_clients_message_id_and_date():
    raw = b"Message-ID: <mine@acme.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nFrom: a@acme.test\r\nTo: bob@example.com\r\n\r\nx\r\n"
    sub = parse(raw, ["bob@example.com"])
    assert message.finalize(sub, "a@acme.test", "<id@acme.test>", 0) == raw


def test_sandbox_from_is_rewritten_and_the_original_becomes_reply_to():
    raw = b"From: =?utf-8?q?J=C3=B6?= <jo@elsewhere.test>\r\nTo: bob@example.com\r\nDate: x\r\nMessage-ID: <m@x>\r\n\r\nx\r\n"
    sub = parse(raw, ["bob@example.com"])
    out = message.finalize(sub, "Jö <sandbox@postline.localhost>", "<id@x>", 0)
    assert out.startswith(b"From: =?utf-8?b?SsO2?= <sandbox@postline.localhost>\r\n"
                          b"Reply-To: =?utf-8?q?J=C3=B6?= <jo@elsewhere.test>\r\nTo: bob@example.com\r\n")


@pytest.mark.parametrize("raw, reply", [
    (b"From: a@acme.test\r\nTo: b@example.com\r\n\r\nline\n.\nMAIL FROM:<x@y>\r\n", "550 5.6.0 the message has a bare CR or LF"),
    (b"From: a@acme.test\nTo: b@example.com\r\n\r\nx\r\n", "550 5.6.0 the message has a bare CR or LF"),
    (b"From: a@acme.test\r\nTo: b@example.com\r\n\r\nx\rBcc: y\r\n", "550 5.6.0 the message has a bare CR or LF"),
    (b"From: a@acme.test\r\nnot a header\r\n\r\nx\r\n", "550 5.6.0 malformed header line"),
    (b"From: a@acme.test\r\nDKIM-Signature: v=1\r\n\r\nx\r\n", "550 5.7.1 headers: DKIM-Signature is a reserved header"),
    (b"From: a@acme.test\r\nReturn-Path: <x@y>\r\n\r\nx\r\n", "550 5.7.1 headers: Return-Path is a reserved header"),
    (b"From: a@acme.test\r\nX-Postline-Id: 1\r\n\r\nx\r\n", "550 5.7.1 headers: X-Postline-Id is a reserved header"),
    (b"From: a@acme.test\r\nFrom: b@acme.test\r\n\r\nx\r\n", "550 5.7.1 headers: more than one From header"),
    (b"From: a@acme.test\r\nSubject: a\r\nsubject: b\r\n\r\nx\r\n", "550 5.7.1 headers: more than one subject header"),
    (b"From: a@acme.test\r\nX-Postline-Tag: a\r\n\r\nx\r\n", "550 5.7.1 headers: X-Postline-Tag is not a Postline header"),
    (b"From: a@acme.test\r\nX-Postline-Track-Opens: maybe\r\n\r\nx\r\n", "550 5.7.1 headers: X-Postline-Track-Opens must be true or false"),
    (b"To: b@example.com\r\n\r\nx\r\n", "550 5.7.1 from: field required"),
    # limits: the whole header is signed and sent (100,000 fields were accepted and delivered)
    (b"From: a@acme.test\r\n" + b"X-H: v\r\n" * 1000 + b"\r\nx\r\n", "552 5.3.4 the message has more than 1000 header fields"),
    (b"From: a@acme.test\r\nX-Long: " + b"v" * 300 * 1024 + b"\r\n\r\nx\r\n", "552 5.3.4 the message header is larger"),
    (b"From: a@acme.test\r\nSubject: caf\xe9\r\n\r\nx\r\n", "550 5.6.0 the Subject header is not valid UTF-8"),
    # a name whose encoded word decodes to a line break: a permanent refusal, not "451 try again later"
    (b"From: =?utf-8?b?" + base64.b64encode(b'"Eve\r\nBcc: x"') + b"?= <a@acme.test>\r\nTo: b@example.com\r\n\r\nx\r\n",
     "550 5.6.0 an address header cannot be used"),
])
def test_refusals(raw, reply):
    assert refused(raw, ["b@example.com"]).startswith(reply)


@pytest.mark.parametrize("raw, error", [
    (b"From: a@acme.test, b@acme.test\r\nTo: b@example.com\r\nSubject: s\r\n\r\nx\r\n", "from: must be one address"),
    (b"From: not an address\r\nTo: b@example.com\r\nSubject: s\r\n\r\nx\r\n", "from: is not a valid address"),
    (b"From: a@acme.test\r\nReply-To: junk <<\r\nSubject: s\r\n\r\nx\r\n", "reply_to"),
])
def test_bad_addresses_in_the_header_are_the_apis_errors(raw, error):
    sub = parse(raw, ["b@example.com"])
    with pytest.raises(ValidationError) as exc:
        SendEmail.model_validate(sub.send)
    assert replies.invalid(exc.value).startswith("550 5.7.1 " + error), replies.invalid(exc.value)


def test_tags_are_checked_like_the_apis():
    sub = parse(b"From: a@acme.test\r\nTo: b@example.com\r\nSubject: s\r\nX-Postline-Tags: ok, not ok!\r\n\r\nx\r\n",
                ["b@example.com"])
    with pytest.raises(ValidationError) as exc:
        SendEmail.model_validate(sub.send)
    assert replies.invalid(exc.value).startswith("550 5.7.1 tags: 'not ok!': tags are 1-64 characters")


@pytest.mark.parametrize("peer, needs", [
    (("127.0.0.1", 5000), False), (("127.8.9.10", 5000), False), (("::1", 5000, 0, 0), False),
    (("::ffff:127.0.0.1", 5000, 0, 0), False), (("192.0.2.7", 5000), True), (("10.0.0.1", 5000), True),
    (("fd00::2", 5000, 0, 0), True), (None, True), (("not-an-ip", 1), True),
])
def test_auth_needs_tls_except_from_loopback(peer, needs):
    assert auth_needs_tls(peer) is needs


@pytest.mark.parametrize("reply, expected", [
    ("250 OK", "250 2.0.0 OK"), ("503 Error: need MAIL command", "503 5.5.1 Error: need MAIL command"),
    ("250 2.1.5 OK", "250 2.1.5 OK"), ("220 Ready to start TLS", "220 Ready to start TLS"),
    ("334 VXNlcm5hbWU6", "334 VXNlcm5hbWU6"), ("538 5.7.11 Encryption required", "538 5.7.11 Encryption required"),
])
def test_enhanced_codes_are_added_to_aiosmtpds_replies(reply, expected):
    assert replies.with_enhanced_code(reply) == expected
