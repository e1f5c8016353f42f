"""Read-your-writes across processes (docs/architecture.md): a management change answered 2xx is seen by the next request on
any API process (``postline all`` with 4 workers, under a send load) or replica (two
``postline api`` on Kafka), and a change made on one replica right after another replica's
change keeps both (no lost update)."""
from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.sequences import ADMIN, SendLoad, Sequences

pytestmark = [pytest.mark.slow]
SEQUENCES = 120  # each one a write then reads on other processes; a stale view fails most of them
TRIES = 10


def raise_limits(api: Api, sid: str) -> None:
    """The load must not be refused by the rate limits, whatever share a process enforces."""
    r = api.admin("PATCH", f"/api/email/services/{sid}", json={"rate_limits": {"per_minute": 1_000_000,
                                                                                  "per_day": 100_000_000}})
    assert r.status_code == 200, r.text


def resend_paths_read_their_writes(api: Api, sid: str) -> None:
    """Resend's management paths, each request on a new connection (any of the processes): a key
    made through ``POST /api-keys`` works at once, a suppression added is found at once."""
    r = api.admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": "full", "permission": "full_access"})
    full = r.json()["key"]
    for i in range(TRIES):
        made = httpx.post(f"{api.http.base_url}/api-keys", json={"name": f"k{i}", "permission": "full_access"},
                          headers={"Authorization": f"Bearer {full}"})
        assert made.status_code == 201, made.text
        listed = httpx.get(f"{api.http.base_url}/api-keys", headers={"Authorization": f"Bearer {made.json()['token']}"})
        assert listed.status_code == 200 and made.json()["id"] in [k["id"] for k in listed.json()["data"]], listed.text
        added = httpx.post(f"{api.http.base_url}/suppressions", json={"email": f"ryw{i}@example.com"},
                           headers={"Authorization": f"Bearer {full}"})
        got = httpx.get(f"{api.http.base_url}/suppressions/{added.json()['id']}", headers={"Authorization": f"Bearer {full}"})
        assert got.status_code == 200 and got.json()["email"] == f"ryw{i}@example.com", got.text


def test_embedded_four_api_processes_read_their_writes_under_load(tmp_path):
    dns = DnsServer().start()
    proc = PostlineProcess(tmp_path / "pl", env={"POSTLINE_WORKERS": "4", "POSTLINE_DNS_SERVER": dns.address}).start()
    try:
        api = Api(proc.url)
        load_sid, load_key = production_service(api, dns, domain="load.test", name="load")
        raise_limits(api, load_sid)
        suppressions = api.create_service("suppressions")
        seq = Sequences([proc.url], dns)
        with SendLoad(proc.url, load_key, "a@load.test") as load:
            seq.run(SEQUENCES, suppressions)
            resend_paths_read_their_writes(api, suppressions)
        assert load.sent > 0
        assert seq.failures == [], seq.summary()
    finally:
        proc.stop()
        dns.stop()


@pytest.fixture
def two_replicas(tmp_path, tansu):
    """Two ``postline api`` replicas on the tansu broker (each with its own data dir) and a DNS server."""
    dns = DnsServer().start()
    env = {"POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "2000", "POSTLINE_DNS_SERVER": dns.address}
    procs = [PostlineProcess(tmp_path / f"api{i}", role="api", env=env).start() for i in range(2)]
    try:
        yield [p.url for p in procs], dns
    finally:
        for p in procs:
            p.stop()
        dns.stop()


@pytest.mark.kafka
def test_kafka_two_replicas_read_their_writes(two_replicas):
    urls, dns = two_replicas
    a = Api(urls[0])
    load_sid, load_key = production_service(a, dns, domain="load.test", name="load")
    raise_limits(a, load_sid)
    suppressions = a.create_service("suppressions")
    seq = Sequences(urls, dns)  # each request on the other replica than the one before
    with SendLoad(urls[1], load_key, "a@load.test"):
        seq.run(60, suppressions)
    assert seq.failures == [], seq.summary()


def patch(url: str, sid: str, body: dict) -> httpx.Response:
    return httpx.patch(f"{url}/api/email/services/{sid}", json=body, headers=ADMIN, timeout=30)


@pytest.mark.kafka
def test_kafka_a_change_on_one_replica_right_after_another_keeps_both(two_replicas):
    """mode → production on A, then at once rate_limits on B: the service is production with
    the new limits, read from either replica (the bug: B's stale view reverted it to sandbox)."""
    urls, dns = two_replicas
    a, lost = Api(urls[0]), []
    for i in range(TRIES):
        sid, _ = production_service(a, dns, domain=f"both{i}.test", name=f"both{i}")
        assert patch(urls[0], sid, {"mode": "sandbox"}).status_code == 200
        assert patch(urls[0], sid, {"mode": "production"}).status_code == 200
        r = patch(urls[1], sid, {"rate_limits": {"per_minute": 100 + i}})
        assert r.status_code == 200, r.text
        for url in urls:
            got = httpx.get(f"{url}/api/email/services/{sid}", headers=ADMIN).json()
            if got["mode"] != "production" or got["rate_limits"]["base_per_minute"] != 100 + i:
                lost.append((i, url, got["mode"], got["rate_limits"]["base_per_minute"]))
    assert lost == [], f"{len({i for i, *_ in lost})} of {TRIES} services lost a change: {lost}"


@pytest.mark.kafka
def test_kafka_concurrent_changes_of_different_fields_on_two_replicas_both_apply(two_replicas):
    """PATCHes of different fields sent at the same moment to A and B: each answered 200 is
    in the service afterwards, as read from both replicas."""
    urls, dns = two_replicas
    a, lost = Api(urls[0]), []
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for i in range(TRIES):
            sid = a.create_service(f"c{i}")
            opens = pool.submit(patch, urls[0], sid, {"track_opens": True})
            clicks = pool.submit(patch, urls[1], sid, {"track_clicks": True})
            answers = opens.result().status_code, clicks.result().status_code
            assert set(answers) <= {200, 409}, answers
            for url in urls:
                got = httpx.get(f"{url}/api/email/services/{sid}", headers=ADMIN).json()
                if (got["track_opens"], got["track_clicks"]) != (answers[0] == 200, answers[1] == 200):
                    lost.append((i, url, answers, got["track_opens"], got["track_clicks"]))
    assert lost == [], f"{len({i for i, *_ in lost})} of {TRIES} services lost a change: {lost}"
