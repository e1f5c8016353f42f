"""The product contract: ``GET /emails/{id}`` returns the record at once after the POST, however many
replicas run. On Kafka the log has no lookup by key, so a request another replica accepted
reaches this one through analytics only: a miss waits until analytics has loaded every
request appended before it (services/api/email_lookup.py ``analytics_caught_up``). Two
``postline api`` replicas, ``postline analytics`` and a ClickHouse HTTP endpoint (chDB) on
the tansu broker; each GET goes to the other replica right after the POST."""
from __future__ import annotations

import pytest

from tests.support.clickhouse_http import ClickHouseHttp
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]
SENDS = 6


def test_a_get_on_another_replica_right_after_the_post_finds_the_email(tmp_path, tansu):
    dns, ch = DnsServer().start(), ClickHouseHttp(tmp_path / "clickhouse").start()
    env = {"POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "1500", "POSTLINE_CLICKHOUSE_URL": ch.url,
           "POSTLINE_DNS_SERVER": dns.address, "POSTLINE_SUBMISSION_PORT": "0"}
    procs = [PostlineProcess(tmp_path / name, role=role, env=env)
             for name, role in (("api-a", "api"), ("api-b", "api"), ("analytics", "analytics"))]
    for p in procs:
        p.start(wait=False)
    try:
        for p in procs:
            p.wait_ready()
        a, b = Api(procs[0].url), Api(procs[1].url)
        _, key = production_service(a, dns)
        for i in range(SENDS):
            posted, getter = (a, b) if i % 2 == 0 else (b, a)
            sent = posted.send(key, {"from": "a@acme.test", "to": f"u{i}@example.com", "subject": f"s{i}", "text": "t"})
            assert sent.status_code == 200, sent.text
            got = getter.http.get(f"/emails/{sent.json()['id']}", headers={"Api-Key": key})
            assert got.status_code == 200, (i, got.text)
            assert got.json()["id"] == sent.json()["id"] and got.json()["subject"] == f"s{i}"
        assert b.http.get("/emails/7c0e7c0e-0000-4000-8000-00000000dead", headers={"Api-Key": key}).status_code == 404
    finally:
        for p in procs:
            p.stop()
        ch.stop()
        dns.stop()
