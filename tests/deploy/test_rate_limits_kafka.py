"""Rate limits over Kafka with three API replicas as separate processes (docs/rate-limits.md): every
replica enforces the service's limit, not a share, with no setting that knows how many
replicas run; the total may pass the limit by at most one second of traffic or 1% of the
limit (whichever is larger). The overshoot measured is printed for docs/rate-limits.md."""
from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
LIMIT, TRIES = 100, 150
BODY = {"from": "hello@acme.test", "to": ["ann@example.com"], "subject": "Hi", "text": "hello"}


@pytest.fixture
def replicas(tmp_path, tansu):
    dns = DnsServer().start()
    env = {"POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "2000", "POSTLINE_DNS_SERVER": dns.address,
           "POSTLINE_SUBMISSION_PORT": "0"}
    procs = [PostlineProcess(tmp_path / f"api-{i}", role="api", env=env).start(wait=False) for i in range(3)]
    try:
        for p in procs:
            p.wait_ready()
        yield [Api(p.url) for p in procs], dns
    finally:
        for p in procs:
            p.stop()
        dns.stop()


def wait_for(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


def service_view(api: Api, sid: str) -> dict:
    return api.admin("GET", f"/api/email/services/{sid}").json()


def test_three_replicas_hold_one_service_limit(replicas):
    apis, dns = replicas
    sid, key = production_service(apis[0], dns)
    assert apis[0].admin("PATCH", f"/api/email/services/{sid}", json={"rate_limits": {"per_minute": LIMIT}}).status_code == 200
    wait_for(lambda: all(service_view(a, sid).get("rate_limits", {}).get("per_minute") == LIMIT for a in apis),
             "every replica knows the limit")
    accepted, start = [0, 0, 0], time.monotonic()

    def hammer(i: int) -> None:
        with httpx.Client(base_url=apis[i].http.base_url, timeout=30) as client:
            for _ in range(TRIES):
                r = client.post("/emails", json=BODY, headers={"Api-Key": key})
                assert r.status_code in (200, 429), r.text
                accepted[i] += r.status_code == 200

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    per_second = 3 * TRIES / (time.monotonic() - start)
    total = sum(accepted)
    print(f"\nrate limit {LIMIT}/min, 3 replicas: accepted {total} ({accepted}), "
          f"overshoot {total - LIMIT}, traffic {per_second:.0f} req/s")
    assert total >= LIMIT, "the service did not get its whole limit"
    assert total - LIMIT <= max(LIMIT * 0.01, per_second), "overshoot past one second of traffic"
    # every replica reports the service's usage, not its own share
    wait_for(lambda: all(service_view(a, sid)["rate_limits"]["usage"]["this_minute"] == total for a in apis),
             "every replica shows the service's usage")
    refused = httpx.post(f"{apis[2].http.base_url}/emails", json=BODY, headers={"Api-Key": key})
    assert refused.status_code == 429 and refused.headers["RateLimit-Limit"] == str(LIMIT)
