"""The four services as separate processes against the tansu broker and a ClickHouse HTTP
endpoint (served over chDB): mail flows end to end, every process stops cleanly on SIGTERM
(finishing and committing what it holds), and after restarts nothing in flight was lost."""
from __future__ import annotations

import json
import time

import pytest

from tests.support.clickhouse_http import ClickHouseHttp
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.receiver import Receiver
from tests.support.smtp_sink import SmtpSink

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]
N = 40


def test_four_processes_sigterm_loses_nothing(tmp_path, tansu):
    sink, dns, rx = SmtpSink(data_delay=0.05).start(), DnsServer().start(), Receiver()
    ch = ClickHouseHttp(tmp_path / "clickhouse").start()
    env = {"POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "1500", "POSTLINE_CLICKHOUSE_URL": ch.url,
           "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address, "POSTLINE_DNS_SERVER": dns.address,
           "POSTLINE_WEBHOOK_ALLOW_PRIVATE": "true"}
    procs = {role: PostlineProcess(tmp_path / role, role=role, env=env) for role in
             ("api", "relay", "webhooks", "analytics")}
    for p in procs.values():
        p.start()
    for p in procs.values():
        p.wait_ready()
    try:
        api = Api(procs["api"].url)
        sid, key = production_service(api, dns)
        r = api.admin("POST", f"/api/email/services/{sid}/webhooks", json={"url": rx.url, "events": ["delivered"]})
        assert r.status_code == 201
        # the webhooks process follows the control topic: it knows the endpoint once it sends it the test event
        assert api.admin("POST", f"/api/email/services/{sid}/webhooks/{r.json()['id']}/test").status_code == 202
        rx.wait(1, timeout=30)
        ids = []
        for i in range(N):
            ids.append(api.send(key, {"from": "a@acme.test", "to": f"u{i}@example.com", "subject": "s",
                                      "text": "t"}).json()["id"])
            if i == N // 4:
                assert procs["relay"].stop() == 0, procs["relay"].output()[-2000:]  # SIGTERM mid-stream
                procs["relay"].start()
            if i == N // 2:
                assert procs["webhooks"].stop() == 0
                procs["webhooks"].start()
                assert procs["analytics"].stop() == 0
                procs["analytics"].start()
        assert procs["api"].stop() == 0
        procs["api"].start()
        api = Api(procs["api"].url)

        def covered(seen: set) -> bool:
            return seen >= set(ids)

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with sink.lock:
                mail = {m.data.split(b"X-Postline-Id: ", 1)[1][:36].decode() for m in sink.received}
            with rx.lock:
                hooks = {json.loads(q["body"])["data"]["email_id"] for q in rx.received}
            stats = api.admin("GET", f"/api/email/services/{sid}/stats", params={"period": "1h"})
            delivered = stats.json()["totals"]["delivered"] if stats.status_code == 200 else -1
            if covered(mail) and covered(hooks) and delivered == N:
                break
            time.sleep(0.5)
        assert covered(mail), f"{len(set(ids) - mail)} messages never reached the sink"
        assert covered(hooks), f"{len(set(ids) - hooks)} delivered events never reached the webhook"
        assert delivered == N, f"analytics counted {delivered} delivered of {N}"
        for role, p in procs.items():
            assert p.stop() == 0, f"{role} did not exit cleanly: {p.output()[-2000:]}"
    finally:
        for p in procs.values():
            p.stop()
        ch.stop()
        rx.stop()
        sink.stop()
        dns.stop()
