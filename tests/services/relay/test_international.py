"""Internationalised addresses (issue 16, defect 6): IDN domains go out as A-labels in the
envelope and the headers (no SMTPUTF8 needed); a non-ASCII local part, in the envelope or
only in a header, makes the transaction SMTPUTF8, and a server without SMTPUTF8 gets
nothing (553 5.6.7) instead of raw UTF-8 it never agreed to."""
from __future__ import annotations

import pytest

from services.relay.mime import build
from services.relay.senders.smtp_pool import SmtpPool
from shared import events as ev
from tests.support.smtp_sink import SmtpSink

IDN = "u@bücher.example"
IDN_ASCII = "u@xn--bcher-kva.example"


def request(to: str, from_: str = "Acme <hello@acme.test>") -> ev.SendRequested:
    return ev.SendRequested(workspace_id="w", service_id="s", email_id=ev.new_id(), mode="production",
                            sending_domain="acme.test", to=[to], recipients=[to], subject="hi", text="body",
                            **{"from": from_})


def headers(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


@pytest.fixture
def sink(request):
    s = SmtpSink(smtputf8=request.param).start()
    yield s
    s.stop()


@pytest.mark.parametrize("sink", [False], indirect=True)
async def test_idn_domains_are_a_labels_everywhere(sink):
    raw = build(request(f"Ünïcode Name <{IDN}>"), "acme.test")
    assert headers(raw).isascii() and IDN_ASCII.encode() in headers(raw)
    pool = SmtpPool("127.0.0.1", sink.port)
    result = await pool.send("bounces+t@bounces.acme.test", [IDN], raw)
    assert result[IDN].status == "delivered", result
    got = sink.received[0]
    assert got.rcpt_tos == [IDN_ASCII] and got.data.isascii()  # accepted by a server without SMTPUTF8
    assert got.message["To"].addresses[0].domain == "xn--bcher-kva.example"
    await pool.close()


@pytest.mark.parametrize("sink", [True], indirect=True)
@pytest.mark.parametrize("to, from_", [("jörg@example.com", "hello@acme.test"),       # envelope needs it
                                       ("ann@example.com", "Jörg <jörg@acme.test>")])  # only a header does
async def test_a_utf8_local_part_is_sent_with_smtputf8(sink, to, from_):
    raw = build(request(to, from_), "acme.test")
    pool = SmtpPool("127.0.0.1", sink.port)
    result = await pool.send("bounces+t@bounces.acme.test", [to], raw)
    assert result[to].status == "delivered", result
    assert sink.received[0].rcpt_tos == [to]
    assert "jörg@".encode() in sink.received[0].data
    await pool.close()


@pytest.mark.parametrize("sink", [False], indirect=True)
@pytest.mark.parametrize("to, from_", [("jörg@example.com", "hello@acme.test"),
                                       ("ann@example.com", "Jörg <jörg@acme.test>")])
async def test_a_server_without_smtputf8_gets_nothing(sink, to, from_):
    pool = SmtpPool("127.0.0.1", sink.port)
    result = await pool.send("bounces+t@bounces.acme.test", [to], build(request(to, from_), "acme.test"))
    assert result[to].status == "bounced" and result[to].smtp_code == 553 and "5.6.7" in result[to].smtp_reply
    assert sink.received == []
    await pool.close()
