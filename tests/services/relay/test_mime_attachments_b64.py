"""Attachment bodies in the MIME the relay builds (services/relay/mime.py): base64 as the API
validated it is wrapped as it is into 76-character lines; any other base64 (wrapped, with
spaces) is decoded and encoded afresh. Either way the part decodes to the original bytes."""
from __future__ import annotations

import base64
import email
import email.policy

import pytest

from services.relay.mime import build
from shared import events as ev

DATA = bytes(range(256)) * 40 + b"tail"  # 10 KB, not a multiple of 3


@pytest.mark.parametrize("content", [base64.b64encode(DATA).decode(), base64.encodebytes(DATA).decode(),
                                     " ".join(base64.b64encode(DATA).decode()[i:i + 60] for i in range(0, 14000, 60))])
def test_an_attachment_decodes_to_its_bytes_in_76_character_lines(content):
    req = ev.SendRequested(workspace_id="w", service_id="s", email_id=ev.new_id(), mode="production",
                           sending_domain="acme.test", to=["ann@example.com"], recipients=["ann@example.com"],
                           subject="Invoice", text="Attached.", **{"from": "a@acme.test"},
                           attachments=[ev.Attachment(filename="a.bin", content_base64=content)])
    raw = build(req, "acme.test")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    (part,) = list(msg.iter_attachments())
    assert part.get_content() == DATA
    body = raw.split(b"Content-Transfer-Encoding: base64\r\n\r\n")[1].split(b"\r\n--")[0]
    assert {len(line) for line in body.split(b"\r\n")[:-1]} == {76}
