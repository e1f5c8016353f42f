"""Idempotency-Key across API replicas in Kafka mode (docs/architecture.md): two ``postline api``
processes with their own data dirs and a ``postline relay`` on the tansu broker. Concurrent
requests with one key, spread over both replicas, give one email id, one request on
``email.requests`` and one message at the sink; one key with two bodies gives one body's
200, 409 for the other, and only that body goes out."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from shared.events import Topic
from shared.log.kafka import KafkaLog
from shared.settings import Settings
from tests.support.burst import burst, delivered_ids
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.smtp_sink import SmtpSink

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]
ROUNDS = 3


def body(to: str, subject: str) -> dict:
    return {"from": "hello@acme.test", "to": to, "subject": subject, "text": "once"}


def appended(bootstrap: str, email_ids: list[str]) -> dict[str, int]:
    """Records keyed by each of ``email_ids`` on ``email.requests`` (every partition, read from the broker)."""
    async def count() -> dict[str, int]:
        log = KafkaLog(Settings(kafka_bootstrap=bootstrap, kafka_idempotence=False))
        await log.start()
        try:
            found = dict.fromkeys(email_ids, 0)
            for part in range(await log.partition_count(Topic.REQUESTS)):
                async for batch in log.scan(Topic.REQUESTS, part):
                    for r in batch:
                        if r.key in found:
                            found[r.key] += 1
            return found
        finally:
            await log.close()
    return asyncio.run(count())


def knows_service(api: Api, sid: str, key: str, timeout: float = 30) -> None:
    """Wait until a replica has the service's key, its verified domain and production mode
    (it follows the control topic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        key_ok = api.http.get(f"/emails/{uuid.uuid4()}", headers={"Api-Key": key}).status_code == 404
        domains = api.admin("GET", f"/api/email/services/{sid}/domains").json().get("data", [])
        mode = api.admin("GET", f"/api/email/services/{sid}").json().get("mode")
        if key_ok and mode == "production" and domains and all(d.get("verified") for d in domains):
            return
        time.sleep(0.2)
    raise AssertionError("the second replica never learnt the service")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, tansu):
    tmp = tmp_path_factory.mktemp("idem-kafka")
    sink, dns = SmtpSink(data_delay=0.3).start(), DnsServer().start()
    env = {"POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "2000", "POSTLINE_DNS_SERVER": dns.address,
           "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address}
    procs = [PostlineProcess(tmp / f"api{i}", role="api", env=env) for i in (1, 2)]
    procs.append(PostlineProcess(tmp / "relay", role="relay", env=env))
    for p in procs:
        p.start()
    try:
        apis = [Api(p.url) for p in procs[:2]]
        sid, key = production_service(apis[0], dns, domain="replicas.test")
        knows_service(apis[1], sid, key)
        yield [p.url for p in procs[:2]], key, sink, tansu.bootstrap
    finally:
        for p in procs:
            p.stop()
        sink.stop()
        dns.stop()


def kafka_body(to: str, subject: str) -> dict:
    return {**body(to, subject), "from": "hello@replicas.test"}


def test_one_key_forty_requests_one_message(replicas):
    urls, key, sink, bootstrap = replicas
    rounds = []
    for n in range(ROUNDS):
        answers = burst(urls, key, f"k-same-{n}-{uuid.uuid4()}", [kafka_body("ann@example.com", f"same {n}")], 40)
        ids = {a.body.get("id") for a in answers}
        email_id = next(iter(ids))
        sink.wait_for(lambda m: email_id.encode() in m.data, timeout=60)
        rounds.append((sorted({a.status for a in answers}), len(ids), email_id))
    counts = appended(bootstrap, [r[2] for r in rounds])
    report = [(s, n, counts[i], delivered_ids(sink).count(i)) for s, n, i in rounds]
    assert all(r == ([200], 1, 1, 1) for r in report), f"(statuses, ids, appends, messages) per round: {report}"


def test_one_key_two_bodies_one_wins(replicas):
    urls, key, sink, bootstrap = replicas
    rounds = []
    for n in range(ROUNDS):
        a, b = kafka_body("ann@example.com", f"mixed {n}"), kafka_body("bob@example.com", f"mixed {n}")
        answers = burst(urls, key, f"k-mixed-{n}-{uuid.uuid4()}", [a, b], 20)
        won = [x for x in answers if x.status == 200]
        assert won, [(x.status, x.body) for x in answers]
        rcpt, email_id = won[0].body["to"][0], won[0].body["id"]
        assert all(x.sent["to"] == rcpt for x in won), "two bodies answered 200"
        assert all(x.status == 409 and x.sent["to"] != rcpt for x in answers if x.status != 200)
        sink.wait_for(lambda m: email_id.encode() in m.data, timeout=60)
        rounds.append(email_id)
    counts = appended(bootstrap, rounds)
    with sink.lock:
        out = {i: [m.rcpt_tos for m in sink.received if i.encode() in m.data] for i in rounds}
    assert all(counts[i] == 1 and len(out[i]) == 1 for i in rounds), f"appends {counts}, messages {out}"
