"""Stats and the message log over HTTP after real deliveries (sink answering 250 / 550)."""
from __future__ import annotations

import time

import pytest

from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.clickhouse


def test_stats_and_message_log_after_known_outcomes(tmp_path):
    sink = SmtpSink(rcpt_replies={f"bad{i}@example.com": "550 5.1.1 unknown user" for i in range(3)}).start()
    dns = DnsServer().start()
    proc = PostlineProcess(tmp_path / "data", env={"POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address,
                                                   "POSTLINE_DNS_SERVER": dns.address}).start()
    try:
        api = Api(proc.url)
        sid, key = production_service(api, dns)
        for i in range(5):
            assert api.send(key, {"from": "a@acme.test", "to": f"ok{i}@example.com", "subject": "s", "text": "t",
                                  "tags": ["ok"]}).status_code == 200
        for i in range(3):
            api.send(key, {"from": "a@acme.test", "to": f"bad{i}@example.com", "subject": "s", "text": "t"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = api.admin("GET", f"/api/email/services/{sid}/stats", params={"period": "24h"}).json()
            if s["totals"]["delivered"] + s["totals"]["bounced"] == 8:
                break
            time.sleep(0.3)
        assert {k: s["totals"][k] for k in ("sent", "delivered", "bounced", "complained", "dropped")} == \
            {"sent": 8, "delivered": 5, "bounced": 3, "complained": 0, "dropped": 0}
        assert s["bucket"] == "hour" and sum(b["sent"] for b in s["buckets"]) == 8
        tagged = api.admin("GET", f"/api/email/services/{sid}/stats", params={"period": "7d", "tag": "ok"}).json()
        assert tagged["totals"]["delivered"] == 5 and tagged["totals"]["bounced"] == 0
        bounced = api.admin("GET", f"/api/email/services/{sid}/messages", params={"status": "bounced"}).json()
        assert sorted(m["to"][0] for m in bounced["data"]) == [f"bad{i}@example.com" for i in range(3)]
        page1 = api.admin("GET", f"/api/email/services/{sid}/messages", params={"limit": 5}).json()
        page2 = api.admin("GET", f"/api/email/services/{sid}/messages",
                          params={"limit": 5, "cursor": page1["next_cursor"]}).json()
        assert len(page1["data"]) == 5 and len(page2["data"]) == 3 and page2["next_cursor"] is None
        assert not {m["id"] for m in page1["data"]} & {m["id"] for m in page2["data"]}
        one = api.admin("GET", f"/api/email/services/{sid}/messages", params={"to": "ok3@example.com"}).json()
        assert [m["status"] for m in one["data"]] == ["delivered"]
        bad = api.admin("GET", f"/api/email/services/{sid}/messages", params={"cursor": "garbage"})
        assert bad.status_code == 400 and bad.json()["error"].startswith("cursor")
    finally:
        proc.stop()
        sink.stop()
        dns.stop()
