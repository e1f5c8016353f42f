"""Embedded mode (``postline all``): the process dies (``os._exit`` at a failpoint, as a
kill -9 would) after a send reached the log but before its Idempotency-Key kept the
response; the client retries with the same key after the restart. The message goes out
once, and stats, the message log and ``GET /emails/{id}`` count its ``sent`` and
``delivered`` once, although the retried request's ``sent`` carries a new time (issue 17)."""
from __future__ import annotations

import time

import httpx
import pytest

from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.clickhouse
BODY = {"from": "hello@acme.test", "to": "ann@example.com", "subject": "once", "text": "x"}


def events_loaded(proc: PostlineProcess) -> float:
    """Rows this process has inserted into postline.events (copies included)."""
    text = httpx.get(f"{proc.url}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith('postline_analytics_rows_total{table="events"}'))


def test_retry_after_a_crash_counts_sent_once(tmp_path):
    sink, dns = SmtpSink().start(), DnsServer().start()
    env = {"POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address, "POSTLINE_DNS_SERVER": dns.address}
    proc = PostlineProcess(tmp_path / "data", env=env).start()
    try:
        api = Api(proc.url)
        sid, key = production_service(api, dns)
        proc.stop()
        proc = PostlineProcess(tmp_path / "data", env={**env, "POSTLINE_FAILPOINTS": "api.after_append=1"},
                               port=proc.port).start()
        with pytest.raises(httpx.TransportError):  # the process died before answering
            api.send(key, BODY, headers={"Idempotency-Key": "order-1"})
        proc.proc.wait(10)
        proc = PostlineProcess(tmp_path / "data", env=env, port=proc.port).start()
        api = Api(proc.url)
        sink.wait_for(lambda m: "ann@example.com" in m.rcpt_tos, timeout=30)  # the first copy went out
        time.sleep(1.1)  # the retried request gets a visibly later time
        r = api.send(key, BODY, headers={"Idempotency-Key": "order-1"})
        assert r.status_code == 200, r.text
        email_id = r.json()["id"]

        deadline = time.monotonic() + 30
        while events_loaded(proc) < 4 and time.monotonic() < deadline:  # both copies' sent + delivered
            time.sleep(0.2)
        assert events_loaded(proc) >= 4, "the retried request's events never reached analytics"
        totals = api.admin("GET", f"/api/email/services/{sid}/stats", params={"period": "1h"}).json()["totals"]
        body = api.http.get(f"/emails/{email_id}", headers={"Api-Key": key}).json()
        assert (totals["sent"], totals["delivered"]) == (1, 1), totals
        assert sorted(e["type"] for e in body["events"]) == ["delivered", "sent"], body["events"]
        log = api.admin("GET", f"/api/email/services/{sid}/messages").json()
        assert [(m["id"], m["status"]) for m in log["data"]] == [(email_id, "delivered")], log
        assert len(sink.to("ann@example.com")) == 1
    finally:
        proc.stop()
        sink.stop()
        dns.stop()
