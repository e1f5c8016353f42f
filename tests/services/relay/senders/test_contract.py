"""One contract suite for every sender: the dev inbox, a smarthost (a real SMTP sink) and
MX delivery (a real DNS server, POSTLINE_DNS_SERVER, pointing at a loopback SMTP sink).

``SenderContract`` holds the tests; each sender's thin subclass says how to build it in
front of a next hop and how to take that next hop away (the pattern of eventsourcing's
per-adapter test subclasses). ``RefusalContract`` adds the tests for next hops that can
refuse one recipient (SMTP); the dev inbox accepts every recipient, so it does not take them."""
from __future__ import annotations

import pytest

from services.relay.senders.inbox import InboxSender
from services.relay.senders.mx import MxSender
from services.relay.senders.smarthost import SmarthostSender
from shared.devinbox import DevInbox
from shared.settings import Settings
from tests.support.broker import free_port
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import SmtpSink

FROM = "app@sender.test"
ANN, BOB = "ann@example.test", "bob@example.test"
RAW = b"From: app@sender.test\r\nTo: ann@example.test\r\nSubject: contract\r\n\r\nHello.\r\n"


class SenderContract:
    def build(self, tmp_path, **sink_options):
        """``(sender, received)``: a sender in front of a running next hop, and a function
        listing what that next hop got as ``(mail_from, rcpts, raw)``; cleanup via ``self.stops``."""
        raise NotImplementedError

    def build_down(self, tmp_path):
        """A sender whose next hop cannot be reached."""
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _cleanup(self):
        self.stops = []
        yield
        for stop in reversed(self.stops):
            stop()

    async def test_delivers_to_every_recipient(self, tmp_path):
        sender, received = self.build(tmp_path)
        results = await sender.send(FROM, [ANN, BOB], RAW)
        await sender.close()
        assert {r: (x.status, 200 <= (x.smtp_code or 0) < 300) for r, x in results.items()} == {
            ANN: ("delivered", True), BOB: ("delivered", True)}
        [(mail_from, rcpts, raw)] = received()
        assert mail_from == FROM and sorted(rcpts) == [ANN, BOB] and b"Subject: contract" in raw

    async def test_a_next_hop_that_is_down_defers_and_never_raises(self, tmp_path):
        sender = self.build_down(tmp_path)
        results = await sender.send(FROM, [ANN, BOB], RAW)
        await sender.close()
        assert {r: (x.status, x.smtp_code) for r, x in results.items()} == {
            ANN: ("deferred", None), BOB: ("deferred", None)}
        assert all(x.smtp_reply for x in results.values())  # says why


class RefusalContract(SenderContract):
    """For next hops that answer per recipient (SMTP)."""

    async def test_a_permanently_refused_recipient_bounces_alone(self, tmp_path):
        sender, received = self.build(tmp_path, rcpt_replies={BOB: "550 5.1.1 no such user"})
        results = await sender.send(FROM, [ANN, BOB], RAW)
        await sender.close()
        assert results[ANN].status == "delivered"
        assert (results[BOB].status, results[BOB].smtp_code) == ("bounced", 550)
        assert "no such user" in results[BOB].smtp_reply
        assert [rcpts for _, rcpts, _ in received()] == [[ANN]]

    async def test_a_temporarily_refused_recipient_is_deferred(self, tmp_path):
        sender, _ = self.build(tmp_path, rcpt_replies={ANN: "451 4.3.0 try later"})
        results = await sender.send(FROM, [ANN], RAW)
        await sender.close()
        assert (results[ANN].status, results[ANN].smtp_code) == ("deferred", 451)


class TestInboxSender(SenderContract):
    def build(self, tmp_path, **sink_options):
        inbox = DevInbox(tmp_path / "inbox.sqlite3")
        self.stops.append(inbox.close)

        def received():
            return [(m["mail_from"], m["rcpt_to"], inbox.raw(m["id"])) for m in inbox.list()]

        return InboxSender(inbox), received

    def build_down(self, tmp_path):
        inbox = DevInbox(tmp_path / "inbox.sqlite3")
        inbox.close()  # its storage is gone
        return InboxSender(inbox)


def _sink_received(sink: SmtpSink):
    return lambda: [(r.mail_from, r.rcpt_tos, r.data) for r in sink.received]


class TestSmarthostSender(RefusalContract):
    def build(self, tmp_path, **sink_options):
        sink = SmtpSink(**sink_options).start()
        self.stops.append(sink.stop)
        return SmarthostSender(Settings(delivery="smarthost", smarthost=sink.address)), _sink_received(sink)

    def build_down(self, tmp_path):
        return SmarthostSender(Settings(delivery="smarthost", smarthost=f"127.0.0.1:{free_port()}"))


class TestMxSender(RefusalContract):
    def dns(self) -> DnsServer:
        dns = DnsServer().start()
        self.stops.append(dns.stop)
        dns.mx("example.test", (10, "mx.example.test"))
        dns.a("mx.example.test", "127.0.0.1")
        return dns

    def build(self, tmp_path, **sink_options):
        sink = SmtpSink(**sink_options).start()
        self.stops.append(sink.stop)
        settings = Settings(delivery="mx", dns_server=self.dns().address, mx_port=sink.port, data_dir=tmp_path)
        return MxSender(settings), _sink_received(sink)

    def build_down(self, tmp_path):
        return MxSender(Settings(delivery="mx", dns_server=self.dns().address, mx_port=free_port(), data_dir=tmp_path))

    async def test_a_dns_failure_defers(self, tmp_path):
        """The resolver itself is down: nothing is known about the domain, so try later."""
        sender = MxSender(Settings(delivery="mx", dns_server=f"127.0.0.1:{free_port()}", mx_port=free_port(),
                                   data_dir=tmp_path))
        results = await sender.send(FROM, [ANN], RAW)
        await sender.close()
        assert (results[ANN].status, results[ANN].smtp_code) == ("deferred", None)
        assert "DNS" in results[ANN].smtp_reply

    async def test_a_null_mx_bounces(self, tmp_path):
        dns = self.dns()
        dns.mx("example.test", (0, "."))
        results = await MxSender(Settings(delivery="mx", dns_server=dns.address, mx_port=free_port())).send(
            FROM, [ANN], RAW)
        assert (results[ANN].status, results[ANN].smtp_code) == ("bounced", 556)
