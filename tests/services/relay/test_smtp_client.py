"""The relay's SMTP client (services/relay/senders/smtp_client.py through SmtpPool) against
real aiosmtpd servers on loopback: pipelined and one-command-at-a-time transactions give the
same per-recipient outcomes; STARTTLS required and opportunistic; AUTH; certificate
checking; refusals while connecting defer (never bounce); a silent server times out."""
from __future__ import annotations

import logging

import pytest

from services.relay.senders.smtp_client import connect, dot_stuffed
from services.relay.senders.smtp_pool import SmtpPool
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

RAW = (b"From: a@acme.test\r\nTo: x@example.com\r\nSubject: hi\r\n\r\n"
       b".a line starting with a dot\r\n.\r\nlast line\r\n")


@pytest.fixture
def sinks():
    started: list[SmtpSink] = []

    def make(**kw) -> SmtpSink:
        sink = SmtpSink(**kw).start()
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()


async def send(pool: SmtpPool, rcpts: list[str], raw: bytes = RAW):
    return await pool.send("bounces+tok@bounces.acme.test", rcpts, raw)


@pytest.mark.parametrize("pipelining", [True, False])
async def test_per_recipient_outcomes_on_one_reused_connection(sinks, pipelining):
    sink = sinks(pipelining=pipelining, rcpt_replies={"nobody@example.com": "550 5.1.1 no such user"})
    conn = await connect("127.0.0.1", sink.port)
    assert ("PIPELINING" in conn.extensions) is pipelining
    await conn.quit()
    pool = SmtpPool("127.0.0.1", sink.port, size=1)
    try:
        first = await send(pool, ["a@example.com", "nobody@example.com", "b@example.com"])
        second = await send(pool, ["c@example.com"])
    finally:
        await pool.close()
    assert (first["a@example.com"].status, first["a@example.com"].smtp_code) == ("delivered", 250)
    assert (first["b@example.com"].status, first["b@example.com"].smtp_code) == ("delivered", 250)
    refused = first["nobody@example.com"]
    assert (refused.status, refused.smtp_code) == ("bounced", 550) and "no such user" in refused.smtp_reply
    assert second["c@example.com"].status == "delivered"
    assert [r.rcpt_tos for r in sink.received] == [["a@example.com", "b@example.com"], ["c@example.com"]]
    assert sink.received[0].mail_from == "bounces+tok@bounces.acme.test"
    assert sink.received[0].data.replace(b"\r\n", b"\n") == RAW.replace(b"\r\n", b"\n")  # dots unstuffed intact
    assert sink.ehlo_count == 2  # the probe connection above, then one connection for both messages


@pytest.mark.parametrize("pipelining", [True, False])
async def test_data_refusal_and_all_recipients_refused(sinks, pipelining):
    sink = sinks(pipelining=pipelining, data_replies=["451 4.3.0 try again later", "250 OK"],
                 rcpt_replies={"x@example.com": "550 5.1.1 unknown", "y@example.com": "452 4.2.2 mailbox full"})
    pool = SmtpPool("127.0.0.1", sink.port, size=1)
    try:
        deferred = await send(pool, ["a@example.com", "x@example.com"])
        none_accepted = await send(pool, ["x@example.com", "y@example.com"])
        after = await send(pool, ["a@example.com"])
    finally:
        await pool.close()
    assert (deferred["a@example.com"].status, deferred["a@example.com"].smtp_code) == ("deferred", 451)
    assert deferred["x@example.com"].smtp_code == 550
    assert {r: (o.status, o.smtp_code) for r, o in none_accepted.items()} == {
        "x@example.com": ("bounced", 550), "y@example.com": ("deferred", 452)}
    assert after["a@example.com"].status == "delivered"  # the connection survived the RSETs
    assert [r.rcpt_tos for r in sink.received] == [["a@example.com"]]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_refused_sender_answers_for_every_recipient(sinks, pipelining):
    sink = sinks(pipelining=pipelining, mail_replies={"blocked@acme.test": "550 5.7.1 sender blocked"})
    pool = SmtpPool("127.0.0.1", sink.port, size=1)
    try:
        refused = await pool.send("blocked@acme.test", ["a@example.com", "b@example.com"], RAW)
        after = await send(pool, ["a@example.com"])
    finally:
        await pool.close()
    assert {(o.status, o.smtp_code) for o in refused.values()} == {("bounced", 550)}
    assert "sender blocked" in refused["b@example.com"].smtp_reply
    assert after["a@example.com"].status == "delivered"
    assert [r.rcpt_tos for r in sink.received] == [["a@example.com"]]


async def test_opportunistic_starttls_is_used_when_offered(sinks):
    sink = sinks(starttls="offer", pipelining=True)
    pool = SmtpPool("127.0.0.1", sink.port, tls="opportunistic")
    try:
        out = await send(pool, ["a@example.com"])
    finally:
        await pool.close()
    assert out["a@example.com"].status == "delivered"
    assert sink.received[0].tls is True


async def test_required_starttls_checks_the_certificate_and_the_offer(sinks):
    self_signed = sinks(starttls="require")
    plain = sinks()
    pools = [SmtpPool("127.0.0.1", self_signed.port, tls="starttls"), SmtpPool("127.0.0.1", plain.port, tls="starttls")]
    try:
        untrusted = (await send(pools[0], ["a@example.com"]))["a@example.com"]
        not_offered = (await send(pools[1], ["a@example.com"]))["a@example.com"]
    finally:
        for pool in pools:
            await pool.close()
    assert untrusted.status == "deferred" and "CERTIFICATE_VERIFY_FAILED" in untrusted.smtp_reply
    assert not_offered.status == "deferred" and "does not offer STARTTLS" in not_offered.smtp_reply
    assert self_signed.received == [] and plain.received == []


async def test_auth_login_and_a_refused_login_defers(sinks):
    sink = sinks(login=("relay", "s3cret"))
    good = SmtpPool("127.0.0.1", sink.port, user="relay", password="s3cret")
    bad = SmtpPool("127.0.0.1", sink.port, user="relay", password="wrong")
    try:
        ok = (await send(good, ["a@example.com"]))["a@example.com"]
        refused = (await send(bad, ["b@example.com"]))["b@example.com"]
    finally:
        await good.close()
        await bad.close()
    assert ok.status == "delivered" and sink.received[0].login == "relay"
    # a refused login is about the connection, not the message: retried later, never a bounce
    assert refused.status == "deferred" and refused.smtp_code is None and "535" in refused.smtp_reply
    assert len(sink.received) == 1


async def test_a_smarthost_login_without_configured_tls_uses_starttls_when_offered(sinks, caplog):
    """POSTLINE_SMARTHOST_TLS=none (the default) with a user: the password goes over STARTTLS
    when the smarthost offers it (it was sent in clear), and the start-up warns."""
    from services.relay.senders.smarthost import SmarthostSender
    from shared.settings import Settings

    sink = sinks(starttls="offer", login=("relay", "s3cret"))
    with caplog.at_level(logging.WARNING):
        sender = SmarthostSender(Settings(delivery="smarthost", smarthost=f"127.0.0.1:{sink.port}",
                                          smarthost_user="relay", smarthost_password="s3cret"))
    try:
        out = await sender.send("bounces+tok@bounces.acme.test", ["a@example.com"], RAW)
        tls_required = await sender.send("bounces+tok@bounces.acme.test", ["b@example.com"], RAW, require_tls=True)
    finally:
        await sender.close()
    assert out["a@example.com"].status == "delivered"
    assert sink.received[0].tls is True and sink.received[0].login == "relay"
    assert tls_required["b@example.com"].status == "deferred"  # unverified STARTTLS is no TLS a send may require
    assert any("POSTLINE_SMARTHOST_TLS" in r.getMessage() and "s3cret" not in r.getMessage() for r in caplog.records)


async def test_a_server_that_stops_answering_times_out_as_deferred(sinks):
    sink = sinks(data_delay=3.0)
    pool = SmtpPool("127.0.0.1", sink.port, timeout=0.5)
    try:
        out = (await send(pool, ["a@example.com"]))["a@example.com"]
    finally:
        await pool.close()
    assert out.status == "deferred" and out.smtp_code is None and "no reply within" in out.smtp_reply


@pytest.mark.parametrize("raw, wire", [
    (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),
    (b".a\r\nb", b"..a\r\nb\r\n.\r\n"),
    (b"a\nb\r.c\r\n", b"a\r\nb\r\n..c\r\n.\r\n"),  # bare LF / CR never reach the wire
])
def test_dot_stuffing_and_line_endings(raw, wire):
    assert dot_stuffed(raw) == wire
