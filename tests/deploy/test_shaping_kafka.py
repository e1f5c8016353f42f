"""Shaping over Kafka (services/relay/shaping/gossip.py): `postline api` and two `postline
relay` processes on the test broker, each with its own data dir (as replicas have), a real DNS
server publishing Google's and Yahoo's MX hosts, an aiosmtpd sink per provider.

- the limits hold for both relays together, measured at the sink — sessions open at once,
  messages in any 1 s window — while both relays deliver (each one's metrics count some), and
  the API process shows the recipients waiting (what the relays publish);
- a provider answering `421 4.7.0 … try again later` for a few seconds: the halved rate is seen
  by the API process (it reads what the relays publish), nothing bounces, all is delivered once."""
from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.services.relay.test_shaping import (RATE_TOLERANCE, THROTTLE, most_in_one_second, provider_row,
                                               saw_queued, send_batch, wait_received)
from tests.support.broker import free_port
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.provider_mx import provider_env, provider_sinks

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
LIMITS = {"google": {"max_connections": 3, "rate": 10, "per_connection": 5},  # 3 for 2 relays: one has the extra slot
          "yahoo": {"max_connections": 2, "rate": 4, "per_connection": 100}}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, tansu):
    tmp, port, dns = tmp_path_factory.mktemp("shaping-kafka"), free_port(), DnsServer().start()
    sinks = provider_sinks(dns, port, google={}, yahoo={})
    env = {**provider_env(dns, port), "POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "2000", "POSTLINE_SUBMISSION_PORT": "0",
           "POSTLINE_SHAPING_PAUSE": "1", "POSTLINE_SHAPING_RECOVERY": "2", "POSTLINE_RETRY_SCHEDULE": "1,1,2"}
    procs = [PostlineProcess(tmp / "api", role="api", env=env).start(wait=False)]
    procs += [PostlineProcess(tmp / f"relay-{i}", role="relay", env=env).start(wait=False) for i in range(2)]
    try:
        for p in procs:
            p.wait_ready()
        api = Api(procs[0].url)
        sid, key = production_service(api, dns)
        assert api.admin("PUT", "/api/email/shaping", json={"providers": LIMITS}).status_code == 200
        for attempt in range(10):  # until both relays are in the consumer group, each delivering its share
            send_batch(api, key, "yahoo.test", 8, f"probe-{attempt}")
            wait_received(sinks["yahoo"], f"probe-{attempt}", 8)
            if all(delivered_by(r) > 0 for r in procs[1:]):
                break
        else:
            raise AssertionError("a relay never delivered")
        yield api, key, sinks, procs[1:]
    finally:
        for p in procs:
            p.stop()
        dns.stop()
        for sink in sinks.values():
            sink.stop()


def delivered_by(relay: PostlineProcess) -> float:
    text = httpx.get(f"{relay.url}/metrics", timeout=10).text
    found = re.search(r'^postline_relay_deliveries_total\{outcome="delivered"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_two_relay_replicas_hold_one_providers_limits(replicas):
    api, key, sinks, relays = replicas
    before = [delivered_by(r) for r in relays]
    send_batch(api, key, "gmail.test", 80, "kafka-limits")
    assert saw_queued(api, "google"), "80 messages at 10/s: some wait for their turn (the relays say so)"
    got = wait_received(sinks["google"], "kafka-limits", 80, timeout=90)
    assert len(got) == 80, "a message arrived twice"
    assert all(delivered_by(r) > n for r, n in zip(relays, before)), "both relays should have delivered some of them"
    limits = LIMITS["google"]
    assert sinks["google"].max_sessions <= limits["max_connections"], f"{sinks['google'].max_sessions} sessions at once"
    busiest = most_in_one_second([m.at for m in got])
    assert busiest <= limits["rate"] + RATE_TOLERANCE, f"{busiest} messages in one second"
    assert sinks["google"].ehlo_count >= 16  # 5 messages per session at most


def test_throttling_is_shared_and_nothing_bounces(replicas):
    api, key, sinks, _ = replicas
    sink = sinks["yahoo"]
    with sink.lock:
        sink.data_replies = [THROTTLE]
    send_batch(api, key, "yahoo.test", 12, "kafka-throttled")
    deadline, row = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        row = provider_row(api, "yahoo")  # the API process's view of what the relays published
        if row["current_rate"] < LIMITS["yahoo"]["rate"]:
            break
        time.sleep(0.1)
    assert row["current_rate"] < LIMITS["yahoo"]["rate"] and row["last_reply"].startswith("421 4.7.0"), row
    time.sleep(3)  # the provider keeps throttling a few seconds
    with sink.lock:
        sink.data_replies = []
    got = wait_received(sink, "kafka-throttled", 12, timeout=60)
    # a bounce is final (never retried): every recipient's message arriving means none bounced
    assert sorted(r for m in got for r in m.rcpt_tos) == sorted(f"u{i}@yahoo.test" for i in range(12))
