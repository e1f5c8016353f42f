"""Never unsigned by accident (services/relay/control_wait.py), through the relay's own
``process`` with real parts: the embedded log, the ledger on disk, OpenSSL signing and an
SMTP sink on loopback.

- a relay behind the position the API decided on waits, then signs with the domain it read;
- one that stays behind defers the message (a retry carrying the same position), sends nothing;
- a production message whose domain is gone is deferred and, after the queue lifetime, failed;
- sandbox mail (no sending domain) still goes out at once, from the platform sender."""
from __future__ import annotations

import asyncio

import pytest

from services.relay.handler import RelayContext, process
from services.relay.ledger import Ledger
from services.relay.senders.smarthost import SmarthostSender
from services.relay.signing import Signer
from shared import events as ev
from shared.control.state import ControlState
from shared.dkim_keys import generate, split_txt, txt_value
from shared.log.sqlite import SqliteLog
from shared.settings import Settings
from tests.support.dns_server import DnsServer
from tests.support.postline import dkim_results
from tests.support.smtp_sink import SmtpSink

MASTER_KEY = "test-master-key"


@pytest.fixture
async def relay(tmp_path):
    sink, dns = SmtpSink().start(), DnsServer().start()
    settings = Settings(data_dir=tmp_path, secret_key=MASTER_KEY, delivery="smarthost", smarthost=sink.address,
                        control_wait_timeout=0.5, retry_schedule="60", queue_lifetime=3600)
    log = SqliteLog(tmp_path / "log.sqlite3")
    await log.start()
    ctx = RelayContext(settings=settings, log=log, control=ControlState(), sender=SmarthostSender(settings),
                       ledger=Ledger(tmp_path / "ledger"), signer=Signer(settings.master_key))
    yield ctx, sink, dns
    await ctx.sender.close()
    ctx.ledger.close()
    ctx.signer.close()
    await log.close()
    sink.stop()
    dns.stop()


def published_domain(ctx: RelayContext, dns: DnsServer) -> ev.DomainSaved:
    """A verified domain of service ``s``, sealed under the relay's master key, keys in DNS."""
    domain_id = ev.new_id()
    dom = ev.DomainSaved(workspace_id="w", service_id="s", domain_id=domain_id, domain="acme.test", verified=True,
                         created_at=ev.utcnow(), **generate(ctx.settings.master_key, domain_id))
    dns.txt(f"{dom.rsa_selector}._domainkey.acme.test", split_txt(txt_value("rsa", dom.rsa_public_b64)))
    dns.txt(f"{dom.ed_selector}._domainkey.acme.test", split_txt(txt_value("ed25519", dom.ed_public_b64)))
    return dom


def request(position: dict[int, int], sending_domain: str | None = "acme.test", **kw) -> ev.SendRequested:
    return ev.SendRequested(workspace_id="w", service_id="s", email_id=ev.new_id(),
                            mode="production" if sending_domain else "sandbox", sending_domain=sending_domain,
                            to=["ann@example.com"], subject="Welcome", text="hello", recipients=["ann@example.com"],
                            control_position=position, **{"from": "Acme <hi@acme.test>"}, **kw)


async def topic(log: SqliteLog, name: str) -> list:
    consumer = log.consumer([name], group=None)
    await consumer.start()
    out = [ev.decode(r.value) for r in await consumer.poll(max_records=1000, timeout=0.2)]
    await consumer.close()
    return out


async def test_a_relay_behind_the_request_waits_and_then_signs(relay):
    ctx, sink, dns = relay
    dom = published_domain(ctx, dns)
    req = request({2: 8})  # the API had read control partition 2 up to offset 7 (the domain's verification)

    async def control_follower_catches_up():
        await asyncio.sleep(0.2)
        ctx.control.apply(dom, 7)
        ctx.control.advance(2, 7)

    await asyncio.gather(process(ctx, req), control_follower_catches_up())
    [mail] = sink.received
    assert dkim_results(mail.data, dns.address) == [True, True]
    assert b"bounces.acme.test" in mail.mail_from.encode()


async def test_a_relay_that_stays_behind_defers_and_sends_nothing(relay):
    ctx, sink, dns = relay
    ctx.control.apply(published_domain(ctx, dns).model_copy(update={"verified": False}), 3)
    ctx.control.advance(2, 3)
    req = request({2: 8})
    await process(ctx, req)
    assert sink.received == []
    events = await topic(ctx.log, ev.Topic.EVENTS)
    assert [e.type for e in events] == ["sent", "deferred"]
    assert "not sent unsigned" in events[1].smtp_reply
    [retry] = await topic(ctx.log, ev.retry_topic(0))
    assert retry.attempt == 1 and retry.control_position == {2: 8}  # the retry waits for the same position


async def test_a_production_message_whose_domain_is_gone_fails_after_the_queue_lifetime(relay):
    ctx, sink, _ = relay
    ctx.control.advance(0, 10)  # caught up: the domain was deleted, not merely unread
    first = ev.utcnow().replace(year=2020)
    req = request({0: 10}, attempt=3, first_attempt_at=first)
    await process(ctx, req)
    assert sink.received == []
    [failed] = await topic(ctx.log, ev.Topic.EVENTS)
    assert failed.type == "failed" and failed.reason == "queue lifetime exceeded"
    assert await topic(ctx.log, ev.retry_topic(0)) == []


async def test_sandbox_mail_is_not_held(relay):
    ctx, sink, _ = relay
    await process(ctx, request({1: 50}, sending_domain=None))
    [mail] = sink.received
    assert b"DKIM-Signature" not in mail.data
