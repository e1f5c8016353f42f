"""Crash the relay at random points across 300 messages: every message reaches the sink at
least once, no (message, recipient) is delivered twice, and every message's `delivered`
event is on the log (a crash after the ledger write and before the events append must not
lose it).

The relay runs as its own process against the tansu broker, with failpoints that exit the
process at random (before delivering, after the ledger write, after emitting events, before
the offset commit); the test restarts it each time it dies. The one place no failpoint is
put is the instant between the receiving server's 250 and the ledger write: no sender can
know whether a message it was killed in the middle of handing over arrived (see
docs/delivery.md).

The relay commits a batch once all of it is handled, so a request is re-handled until a pass
over its whole batch goes through without a crash. With the default batch (4 × 64 requests)
and these crash rates, a pass over a full batch survives ~5 % of the time, and the last
requests of a batch may never be reached before the next crash (CI once saw two messages
without their event after 90 s of restarts): the relay runs 16 at a time here, batches of 64,
so each pass has about even odds: crashes stay frequent (14–16 restarts a run) and each
batch goes through after a few passes."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from shared import events as ev
from shared.log.kafka import KafkaLog
from shared.settings import Settings
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, post_batches, production_service
from tests.support.smtp_sink import SmtpSink

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
MESSAGES = 200  # ~7 crashes at these failpoint odds (the test wants 3 or more)


async def delivered_events(bootstrap: str) -> set[str]:
    """Email ids with a ``delivered`` event on email.events, read from the start."""
    lg = KafkaLog(Settings(kafka_bootstrap=bootstrap, kafka_idempotence=False, kafka_session_timeout_ms=1500))
    await lg.start()
    consumer = lg.consumer([ev.Topic.EVENTS], None)
    await consumer.start()
    seen: set[str] = set()
    try:
        while records := await consumer.poll(max_records=5000, timeout=2.0):
            seen |= {e.email_id for e in map(lambda r: ev.decode(r.value), records) if e.type == "delivered"}
    finally:
        await consumer.close()
        await lg.close()
    return seen


def test_relay_killed_at_random_points_loses_and_doubles_nothing(tmp_path, tansu):
    sink, dns = SmtpSink().start(), DnsServer().start()
    env = {"POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "1500", "POSTLINE_DELIVERY": "smarthost",
           "POSTLINE_SMARTHOST": sink.address, "POSTLINE_DNS_SERVER": dns.address}
    api_proc = PostlineProcess(tmp_path / "api", role="api", env=env).start()
    crashy = {**env, "POSTLINE_RELAY_CONCURRENCY": "16",
              # these crashes are the failpoints', not the messages': none is ever given up (crash_guard.py)
              "POSTLINE_RELAY_CRASHES_PER_REQUEST": "1000",
              "POSTLINE_FAILPOINTS": "relay.before_deliver=0.012,relay.after_ledger=0.012,"
                                     "relay.after_events=0.012,consumer.before_commit=0.02"}
    relay = PostlineProcess(tmp_path / "relay", role="relay", env=crashy).start()
    restarts = 0
    try:
        api = Api(api_proc.url)
        _, key = production_service(api, dns)
        ids = post_batches(api_proc.url, key, MESSAGES, "crash test")
        assert len(set(ids)) == MESSAGES
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with sink.lock:
                got = {m.data.split(b"X-Postline-Id: ", 1)[1][:36].decode() for m in sink.received}
            if got >= set(ids):
                break
            if relay.proc.poll() is not None:  # it crashed at a failpoint: start it again
                restarts += 1
                relay.start()
            time.sleep(0.2)
        with sink.lock:
            counts = Counter((m.data.split(b"X-Postline-Id: ", 1)[1][:36].decode(), tuple(m.rcpt_tos))
                             for m in sink.received)
        delivered = {mid for mid, _ in counts}
        assert delivered >= set(ids), f"{len(set(ids) - delivered)} messages never arrived"
        doubled = {k: n for k, n in counts.items() if n > 1}
        assert not doubled, f"delivered twice: {list(doubled)[:5]}"
        assert restarts >= 3, "the failpoints should have crashed the relay several times"
        missing = set(ids)
        deadline = time.monotonic() + 90
        while missing and time.monotonic() < deadline:  # the relay may still crash and restart
            missing -= asyncio.run(delivered_events(tansu.bootstrap))
            if relay.proc.poll() is not None:
                relay.start()
        assert not missing, f"{len(missing)} messages have no delivered event"
    finally:
        relay.stop()
        api_proc.stop()
        sink.stop()
        dns.stop()
