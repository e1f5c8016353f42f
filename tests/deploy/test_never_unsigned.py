"""Fresh domains send at once, distributed: the tansu broker, ``postline api`` and two
``postline relay`` processes. Ten services each create a domain, verify it, switch to
production and send in the same breath, all ten at once. Each relay reads the domain from
the control topic on its own schedule (here: two seconds late, on purpose); before send requests carried the API's control-log
position, a relay that had not read the domain yet sent the message unsigned, with a
bounce address on the platform host (issue 17). Now every message is signed by its own
domain, and dkimpy verifies both signatures (RSA and Ed25519) against the published keys."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, dkim_results, production_service
from tests.support.smtp_sink import SmtpSink

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
DOMAINS = 10


def delivered(sink: SmtpSink, sent: dict[str, str], timeout: float = 90) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sink.lock:
            got = [m for m in sink.received if any(i.encode() in m.data for i in sent)]
        if len(got) >= len(sent):
            break
        time.sleep(0.2)
    return got


def test_ten_fresh_domains_sending_at_once_are_all_signed(tmp_path, tansu):
    sink, dns = SmtpSink().start(), DnsServer().start()
    env = {"POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "2000", "POSTLINE_DNS_SERVER": dns.address,
           "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address,
           "POSTLINE_RETRY_SCHEDULE": "1"}  # a message held past the wait comes back within a second
    api_proc = PostlineProcess(tmp_path / "api", role="api", env=env).start()
    # the relays read the control topic 2 s late, so every send overtakes its domain: what
    # happened by chance under load (2 of 13 unsigned) happens to every message here
    late = {**env, "POSTLINE_FAILPOINTS": "control.follow.delay=2"}
    relays = [PostlineProcess(tmp_path / f"relay{i}", role="relay", env=late).start() for i in range(2)]
    try:
        for r in relays:
            r.wait_ready()
        api = Api(api_proc.url)

        def fresh_domain_sends_at_once(i: int) -> tuple[str, str]:
            domain = f"shop{i}.test"
            _, key = production_service(Api(api_proc.url), dns, domain=domain, name=f"shop{i}")
            r = Api(api_proc.url).send(key, {"from": f"Shop <hi@{domain}>", "to": f"buyer{i}@example.com",
                                             "subject": "Your receipt", "text": "thanks"})
            assert r.status_code == 200 and r.json()["mode"] == "production", r.text
            return r.json()["id"], domain

        with ThreadPoolExecutor(DOMAINS) as pool:
            sent = dict(pool.map(fresh_domain_sends_at_once, range(DOMAINS)))
        got = delivered(sink, sent)
        assert len(got) == DOMAINS, f"{len(got)} of {DOMAINS} delivered"
        for mail in got:
            email_id = next(i for i in sent if i.encode() in mail.data)
            assert dkim_results(mail.data, dns.address) == [True, True], f"{email_id} not signed by its domain"
            assert f"d={sent[email_id]}".encode() in mail.data
            assert mail.mail_from.endswith(f"@bounces.{sent[email_id]}"), mail.mail_from
        assert api.http.get("/readyz").status_code == 200
    finally:
        for r in relays:
            r.stop()
        api_proc.stop()
        sink.stop()
        dns.stop()
