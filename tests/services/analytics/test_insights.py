"""Deliverability insights end to end (docs/analytics.md): mixed traffic through MX delivery to three
aiosmtpd sinks playing Google, Microsoft and Yahoo (a real DNS server gives their MX names
loopback addresses 127.0.0.2–4, one port), with scripted replies and delays → exact counts
per provider, domain, bounce class, TLS; latency percentiles within the sinks' delays; the
bounce-rate alert raised once and cleared once, through a webhook."""
from __future__ import annotations

import json
import time

import pytest

from services.relay.bounce_class import classify
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.receiver import Receiver
from tests.support.provider_mx import provider_env, provider_sinks
from tests.support.broker import free_port

BODY = {"from": "Acme <hello@acme.test>", "subject": "Hi", "text": "body"}
GOOGLE_DELAY, YAHOO_RETRY = 0.4, 1.0
NO_SUCH_USER = "550 5.1.1 <gone@outlook.test>: no such user"
# recipient → (provider, final status)
TRAFFIC = {**{f"g{i}@gmail.test": ("google", "delivered") for i in range(4)},
           **{f"m{i}@outlook.test": ("microsoft", "delivered") for i in range(2)},
           "gone@outlook.test": ("microsoft", "bounced"),
           "y0@yahoo.test": ("yahoo", "delivered")}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    port, dns = free_port(), DnsServer().start()
    sinks = provider_sinks(dns, port, google={"data_delay": GOOGLE_DELAY},
                           microsoft={"rcpt_replies": {"gone@outlook.test": NO_SUCH_USER}},
                           yahoo={"data_replies": ["421 4.7.0 [TS01] try later", "250 2.0.0 ok"]})
    hooks = Receiver()
    proc = PostlineProcess(tmp_path_factory.mktemp("insights") / "data", env={
        **provider_env(dns, port), "POSTLINE_RETRY_SCHEDULE": str(int(YAHOO_RETRY)),
        "POSTLINE_SHAPING_PAUSE": "0.5",  # its 421 pauses yahoo's shaping (docs/delivery.md): briefly here
        "POSTLINE_ALERT_INTERVAL": "0.5",
        "POSTLINE_WEBHOOK_ALLOW_PRIVATE": "true"}).start()
    api = Api(proc.url)
    sid, key = production_service(api, dns)
    r = api.admin("POST", f"/api/email/services/{sid}/webhooks", json={"url": hooks.url, "events": ["alert"]})
    assert r.status_code == 201, r.text
    r = api.admin("PATCH", f"/api/email/services/{sid}", json={"alerts": {"bounce_rate": 0.1, "min_volume": 3}})
    assert r.status_code == 200 and r.json()["alerts"] == {"bounce_rate": 0.1, "complaint_rate": 0.001, "min_volume": 3}
    ids = {rcpt: api.send(key, {**BODY, "to": rcpt, "tags": [{"name": "kind", "value": "welcome"}]}).json()["id"]
           for rcpt in TRAFFIC}
    for rcpt, (_, status) in TRAFFIC.items():
        api.wait_status(key, ids[rcpt], rcpt, status, timeout=40)
    yield {"api": api, "sid": sid, "key": key, "hooks": hooks, "proc": proc}
    proc.stop()
    for part in (*sinks.values(), dns):
        part.stop()
    hooks.stop()


def stats(env, **params) -> dict:
    deadline = time.monotonic() + 20
    while True:  # the analytics loader's batch lag
        r = env["api"].admin("GET", f"/api/email/services/{env['sid']}/stats", params={"period": "24h", **params})
        assert r.status_code == 200, r.text
        body = r.json()
        done = sum(g["totals"]["delivered"] + g["totals"]["bounced"] for g in body["groups"])
        if params.get("group_by") in ("tls", "bounce_class") or done >= len(TRAFFIC) or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def totals(body: dict, *types: str) -> dict:
    return {g["key"]: {t: g["totals"][t] for t in types} for g in body["groups"]}


def test_counts_per_provider_are_exact(env):
    body = stats(env, group_by="provider")
    assert totals(body, "delivered", "deferred", "bounced") == {
        "google": {"delivered": 4, "deferred": 0, "bounced": 0},
        "microsoft": {"delivered": 2, "deferred": 0, "bounced": 1},
        "yahoo": {"delivered": 1, "deferred": 1, "bounced": 0}}
    assert [g["key"] for g in body["groups"]] == ["google", "microsoft", "yahoo"]  # largest first
    assert len(body["groups"][0]["buckets"]) in (24, 25)


def test_top_n_then_other(env):
    body = stats(env, group_by="provider", limit=1)
    assert totals(body, "delivered", "bounced", "deferred") == {
        "google": {"delivered": 4, "bounced": 0, "deferred": 0},
        "other": {"delivered": 3, "bounced": 1, "deferred": 1}}


def test_counts_per_recipient_domain_bounce_class_and_tls(env):
    by_domain = stats(env, group_by="recipient_domain")
    assert totals(by_domain, "sent", "delivered", "bounced") == {
        "gmail.test": {"sent": 4, "delivered": 4, "bounced": 0},
        "outlook.test": {"sent": 3, "delivered": 2, "bounced": 1},
        "yahoo.test": {"sent": 1, "delivered": 1, "bounced": 0}}
    by_class = stats(env, group_by="bounce_class")
    assert totals(by_class, "bounced") == {classify(550, NO_SUCH_USER).bounce_class: {"bounced": 1}}
    assert totals(stats(env, group_by="tls"), "delivered") == {"plaintext": {"delivered": 7}}  # the sinks offer no STARTTLS
    every = ("delivered", "deferred", "bounced")
    assert totals(stats(env, group_by="provider", tag="kind:welcome"), *every) == totals(stats(env, group_by="provider"), *every)
    assert stats(env, group_by="provider", tag="kind:other")["groups"] == []  # every message has kind:welcome


def test_latency_within_the_sinks_delays(env):
    r = env["api"].admin("GET", f"/api/email/services/{env['sid']}/stats/latency", params={"period": "24h"})
    assert r.status_code == 200, r.text
    body = r.json()
    by = {p["provider"]: p for p in body["providers"]}
    assert {k: by[k]["delivered"] for k in by} == {"google": 4, "microsoft": 2, "yahoo": 1}
    assert body["overall"]["delivered"] == 7
    # bounds from the scripts (bfloat16 quantiles are within 1%), not timings of our code
    assert GOOGLE_DELAY * 1000 * 0.99 <= by["google"]["p50_ms"] <= by["google"]["p99_ms"] < 30_000
    assert YAHOO_RETRY * 1000 * 0.99 <= by["yahoo"]["p50_ms"] < 60_000
    assert by["microsoft"]["p50_ms"] < by["yahoo"]["p50_ms"]


def test_unknown_group_by_is_a_422_naming_it_and_a_bad_limit_a_400(env):
    r = env["api"].admin("GET", f"/api/email/services/{env['sid']}/stats", params={"group_by": "planet"})
    assert r.status_code == 422 and "group_by" in r.json()["error"]
    r = env["api"].admin("GET", f"/api/email/services/{env['sid']}/stats", params={"group_by": "provider", "limit": 0})
    assert r.status_code == 400 and "limit" in r.json()["error"]  # the API's validation errors


def test_a_service_not_of_the_workspace_is_a_404(env):
    """The same ownership check as every service route (``owned_service``)."""
    for path in ("stats?group_by=provider", "stats/latency"):
        r = env["api"].admin("GET", f"/api/email/services/not-a-service/{path}")
        assert r.status_code == 404 and r.json()["error"]


def alert_hooks(env) -> list[dict]:
    return [json.loads(h["body"]) for h in env["hooks"].received]


def test_bounce_rate_alert_raised_once_then_cleared_by_a_new_threshold(env):
    """1 bounce in 8 attempts (12.5%, more while the traffic was under way) is over 10%: one
    `alert` webhook, however many rounds (every 0.5 s) follow; a threshold of 50% clears it, once."""
    raised = env["hooks"].wait(1, timeout=30)
    time.sleep(2)  # four more evaluation rounds: still one
    hooks = alert_hooks(env)
    assert [(h["type"], h["data"]["kind"], h["data"]["state"]) for h in hooks] == [("alert", "bounce_rate", "raised")]
    # the rate when it crossed: 1 bounce in 3 to 8 attempts, whichever the round saw first
    assert any(hooks[0]["data"]["value"] == pytest.approx(1 / k) for k in range(3, 9))
    assert hooks[0]["data"]["threshold"] == 0.1
    assert raised[0]["headers"]["webhook-id"]
    r = env["api"].admin("PATCH", f"/api/email/services/{env['sid']}", json={"alerts": {"bounce_rate": 0.5}})
    assert r.status_code == 200
    env["hooks"].wait(2, timeout=30)
    time.sleep(1)
    hooks = alert_hooks(env)
    assert [h["data"]["state"] for h in hooks] == ["raised", "cleared"]
    assert hooks[0]["data"]["email_id"] == hooks[1]["data"]["email_id"]  # one episode


def test_thresholds_are_validated(env):
    r = env["api"].admin("PATCH", f"/api/email/services/{env['sid']}", json={"alerts": {"bounce_rate": 2}})
    assert r.status_code in (400, 422) and "bounce_rate" in r.json()["error"]


def test_metrics_per_provider(env):
    """/metrics: deferrals and queued→delivered latency by provider, emitted by the relay."""
    text = env["api"].http.get("/metrics").text
    assert 'postline_relay_deferrals_total{provider="yahoo"} 1.0' in text
    assert 'postline_delivery_latency_seconds_count{provider="google"} 4.0' in text
    assert 'postline_delivery_latency_seconds_count{provider="microsoft"} 2.0' in text
