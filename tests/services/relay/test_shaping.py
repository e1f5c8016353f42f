"""Shaping per mailbox provider, end to end: `postline all` with two relay
processes on one embedded log, a real DNS server publishing MX records of Google, Microsoft
and Yahoo hosts, and one aiosmtpd sink per provider, each on its own loopback address and
the same port (POSTLINE_MX_PORT; tests/support/provider_mx.py).

- the limits set through `PUT /api/email/shaping` hold for both relays together, measured
  at the sinks: sessions open at once, messages in any 1 s window, messages per session;
  the recipients waiting for their turn show in `GET /api/email/shaping` (`queued`);
- a provider answering `421 4.7.0 … try again later` for a few seconds has its rate halved
  (seen in `GET /api/email/shaping`): the throttled are deferred, none bounces, everything
  is delivered after;
- a service assigned to an IP pool sends from the pool's address (127.0.0.9) with its EHLO
  name, and a new address's warm-up cap holds: the sends beyond it wait, none bounces;
- each address of a pool has the provider's limits of its own, the warm ones taking turns.
  (Last: they assign the module's service to pools.)"""
from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.support.broker import free_port
from tests.support.dns_server import DnsServer
from tests.support.postline import ADMIN_TOKEN, Api, PostlineProcess, production_service
from tests.support.provider_mx import provider_env, provider_sinks
from tests.support.smtp_sink import SmtpSink

LIMITS = {"google": {"max_connections": 2, "rate": 10, "per_connection": 5},
          "microsoft": {"max_connections": 1, "rate": 5, "per_connection": 100},
          "yahoo": {"max_connections": 2, "rate": 4, "per_connection": 100}}
# Start times are spaced exactly (one schedule for both relays); the sink sees a message when
# its DATA ends, so a transaction slowed by the busy machine can land next to the following
# one. Tolerance: 3 messages over the rate in any 1 s window.
RATE_TOLERANCE = 3
THROTTLE = "421 4.7.0 [TS01] Messages temporarily deferred due to unusual rate - try again later"


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    port, dns = free_port(), DnsServer().start()
    sinks = provider_sinks(dns, port, google={}, microsoft={}, yahoo={})
    proc = PostlineProcess(tmp_path_factory.mktemp("shaping") / "data", env={
        **provider_env(dns, port),
        "POSTLINE_RELAY_PROCESSES": "2", "POSTLINE_SHAPING_PAUSE": "1", "POSTLINE_SHAPING_RECOVERY": "2",
        "POSTLINE_RETRY_SCHEDULE": "1,1,2"}).start()
    api = Api(proc.url)
    sid, key = production_service(api, dns)
    r = api.admin("PUT", "/api/email/shaping", json={"providers": LIMITS})
    assert r.status_code == 200, r.text
    try:
        yield api, key, sinks, sid
    finally:
        proc.stop()
        dns.stop()
        for sink in sinks.values():
            sink.stop()


def send_batch(api: Api, key: str, domain: str, n: int, subject: str) -> list[str]:
    items = [{"from": "hello@acme.test", "to": f"u{i}@{domain}", "subject": subject, "text": "x"} for i in range(n)]
    r = api.http.post("/emails/batch", json=items, headers={"Api-Key": key}, timeout=60)
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["data"]]


def wait_received(sink: SmtpSink, subject: str, n: int, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sink.lock:
            got = [m for m in sink.received if f"Subject: {subject}".encode() in m.data]
        if len(got) >= n:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{len(got)} of {n} messages with subject {subject!r} arrived")


def most_in_one_second(times: list[float]) -> int:
    times, best, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def provider_rows(api: Api) -> dict[str, dict]:
    """``GET /api/email/shaping``'s rows by provider (a provider with no state yet has none)."""
    return {r["provider"]: r for r in api.admin("GET", "/api/email/shaping").json()["data"]}


def provider_row(api: Api, name: str) -> dict:
    return provider_rows(api)[name]


def saw_queued(api: Api, name: str, timeout: float = 30.0) -> bool:
    """Whether ``GET /api/email/shaping`` showed recipients waiting for ``name`` within ``timeout``
    (polled until it does: the relays may still be starting when the sends are accepted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if provider_rows(api).get(name, {}).get("queued", 0) > 0:  # no row yet: nothing queued yet
            return True
        time.sleep(0.05)
    return False


def test_limits_hold_for_two_relays_together(installation):
    api, key, sinks, _ = installation
    send_batch(api, key, "gmail.test", 60, "limits-g")
    send_batch(api, key, "outlook.test", 20, "limits-m")
    assert saw_queued(api, "google"), "60 messages at 10/s: some wait for their turn"
    for name, n, subject in (("google", 60, "limits-g"), ("microsoft", 20, "limits-m")):
        got = wait_received(sinks[name], subject, n)
        assert len(got) == n, f"{name}: a message arrived twice"
        limits = LIMITS[name]
        assert sinks[name].max_sessions <= limits["max_connections"], f"{name}: {sinks[name].max_sessions} sessions at once"
        busiest = most_in_one_second([m.at for m in got])
        assert busiest <= limits["rate"] + RATE_TOLERANCE, f"{name}: {busiest} messages in one second"
    # 5 messages per session at most: 60 messages to Google took at least 12 sessions
    assert sinks["google"].ehlo_count >= 12
    row = provider_row(api, "google")
    assert row["configured"] == {**LIMITS["google"], "recipients_per_transaction": 50} and row["custom"]


def test_throttling_halves_the_rate_and_nothing_bounces(installation):
    api, key, sinks, _ = installation
    sink = sinks["yahoo"]
    with sink.lock:
        sink.data_replies = [THROTTLE]
    ids = send_batch(api, key, "yahoo.test", 12, "throttled")
    deadline, row = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        row = provider_row(api, "yahoo")
        if row["current_rate"] < LIMITS["yahoo"]["rate"]:
            break
        time.sleep(0.1)
    assert row["current_rate"] < LIMITS["yahoo"]["rate"] and row["state"] in ("backing_off", "paused"), row
    assert row["last_reply"].startswith("421 4.7.0")
    metrics = api.http.get("/metrics").text  # every process's gauges (the relays publish on a throttle)
    assert re.search(r'^postline_shaping_state\{provider="yahoo",state="(backing_off|paused)"\} 1\.0$', metrics, re.M)
    assert re.search(r'^postline_shaping_rate\{provider="yahoo"\} [0-3](\.\d+)?$', metrics, re.M)  # under its 4/s
    time.sleep(4)  # the provider keeps throttling a few seconds
    with sink.lock:
        sink.data_replies = []
    wait_received(sink, "throttled", 12)
    for i, email_id in enumerate(ids):
        api.wait_status(key, email_id, f"u{i}@yahoo.test", "delivered", timeout=30)
        events = api.http.get(f"/emails/{email_id}", headers={"Api-Key": key}).json()["events"]
        assert not [e for e in events if e["type"] == "bounced"]


def test_shaping_api_refuses_bad_limits_and_anonymous_callers(installation):
    api, _, _, _ = installation
    bad = api.admin("PUT", "/api/email/shaping", json={"providers": {"google": {"max_connections": 0, "rate": 1,
                                                                                  "per_connection": 1}}})
    assert bad.status_code == 400 and "max_connections" in bad.json()["error"]
    bad = api.admin("PUT", "/api/email/shaping", json={"providers": {"Not A Name!": LIMITS["google"]}})
    assert bad.status_code == 400 and "providers" in bad.json()["error"]
    assert httpx.get(f"{api.http.base_url}/api/email/shaping").status_code == 401
    assert provider_row(api, "google")["configured"]["max_connections"] == LIMITS["google"]["max_connections"]


def test_a_pool_address_sends_and_its_warmup_cap_holds(installation):
    api, key, sinks, sid = installation
    r = api.admin("POST", "/api/email/ip-pools", json={
        "name": "new", "addresses": [{"ip": "127.0.0.9", "ehlo_name": "mta1.acme.test"}], "warmup_schedule": [3]})
    assert r.status_code == 201, r.text
    pool = r.json()
    assert pool["addresses"][0]["warmup_day"] == 1 and pool["addresses"][0]["cap_today"] == 3
    assert api.admin("PATCH", f"/api/email/services/{sid}", json={"ip_pool_id": pool["id"]}).json()["ip_pool_id"] == pool["id"]
    ids = send_batch(api, key, "gmail.test", 5, "pooled")
    first = wait_received(sinks["google"], "pooled", 3)
    assert {(m.peer, m.helo) for m in first} == {("127.0.0.9", "mta1.acme.test")}
    time.sleep(2)  # the two beyond the cap are deferred and retried (every 1–2 s), finding the cap reached
    assert len(wait_received(sinks["google"], "pooled", 3)) == 3
    statuses = [api.http.get(f"/emails/{i}", headers={"Api-Key": key}).json()["recipients"] for i in ids]
    assert not [s for s in statuses if any(r["status"] == "bounced" for r in s.values())]
    view = api.admin("GET", f"/api/email/ip-pools/{pool['id']}").json()
    assert view["addresses"][0]["sent_today"] == {"google": 3}
    r = api.admin("PATCH", f"/api/email/ip-pools/{pool['id']}", json={"warmup_schedule": [10]})
    assert r.status_code == 200, r.text
    got = wait_received(sinks["google"], "pooled", 5)
    assert len(got) == 5 and {m.peer for m in got} == {"127.0.0.9"}
    assert api.admin("DELETE", f"/api/email/ip-pools/{pool['id']}").status_code == 409  # still assigned
    bad = api.admin("POST", "/api/email/ip-pools", json={"name": "x", "addresses": [{"ip": "300.1.1.1", "ehlo_name": "a.b"}]})
    assert bad.status_code == 400 and "ip" in bad.json()["error"]


def test_each_address_of_a_pool_has_the_providers_limits(installation):
    """Two warm addresses take the messages in turn, each with Microsoft's one connection and
    5 messages/s of its own (a pool of two sends twice a provider's rate)."""
    api, key, sinks, sid = installation
    r = api.admin("POST", "/api/email/ip-pools", json={"name": "warm", "addresses": [
        {"ip": "127.0.0.10", "ehlo_name": "mta2.acme.test", "warm": True},
        {"ip": "127.0.0.11", "ehlo_name": "mta3.acme.test", "warm": True}]})
    assert r.status_code == 201, r.text
    pool_id = r.json()["id"]
    assert api.admin("PATCH", f"/api/email/services/{sid}", json={"ip_pool_id": pool_id}).status_code == 200
    send_batch(api, key, "outlook.test", 30, "two-addresses")
    got = wait_received(sinks["microsoft"], "two-addresses", 30)
    by_address = {ip: [m.at for m in got if m.peer == ip] for ip in ("127.0.0.10", "127.0.0.11")}
    assert all(len(times) >= 10 for times in by_address.values()), {ip: len(t) for ip, t in by_address.items()}
    limits = LIMITS["microsoft"]
    for ip, times in by_address.items():
        assert sinks["microsoft"].max_sessions_by_peer[ip] <= limits["max_connections"], ip
        assert most_in_one_second(times) <= limits["rate"] + RATE_TOLERANCE, ip
    assert sinks["microsoft"].max_sessions == 2  # one per address at once: two budgets, not one shared
    rows = api.admin("GET", "/api/email/shaping").json()["data"]
    assert {r["source_ip"] for r in rows if r["provider"] == "microsoft"} >= {None, "127.0.0.10", "127.0.0.11"}


@pytest.mark.browser
def test_the_shaping_page_shows_providers_and_the_pools_warmup(installation, browser):
    api, _, _, _ = installation
    context = browser.new_context(base_url=str(api.http.base_url))
    page = context.new_page()
    try:
        page.goto("/")
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/services")
        page.get_by_role("link", name="Shaping").click()
        page.wait_for_url("**/shaping")
        providers = page.get_by_role("table", name="Providers")
        assert "queued" in providers.get_by_role("row").first.inner_text().lower()  # the header: recipients waiting
        google = providers.get_by_role("row").filter(has_text="google").first  # then one row per pool address
        assert "custom" in google.inner_text() and re.search(r"\b[0-2] / 2\b", google.inner_text())
        yahoo = providers.get_by_role("row").filter(has_text="yahoo").inner_text()
        assert "421 4.7.0" in yahoo  # its last throttling reply
        pool_row = page.get_by_role("table", name="IP pools").get_by_role("row").filter(has_text="127.0.0.9").inner_text()
        assert "mta1.acme.test" in pool_row and "google: 5" in pool_row
    finally:
        context.close()
