"""Webhooks against real HTTP receivers on loopback, verified with `standardwebhooks`."""
from __future__ import annotations

import json
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.webhooks.dispatch import Clients, attempt
from tests.support.dns_server import DnsServer
from tests.support.inproc import api_runtime
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.receiver import Receiver

SEND = {"from": "a@acme.test", "subject": "hello", "text": "t", "tags": ["t1"]}


@pytest.fixture
def env(tmp_path):
    dns = DnsServer().start()
    procs = []

    def start(**extra):
        p = PostlineProcess(tmp_path / "data", env={"POSTLINE_DNS_SERVER": dns.address,
                                                    "POSTLINE_WEBHOOK_ALLOW_PRIVATE": "true",
                                                    "POSTLINE_WEBHOOK_RETRY_SCHEDULE": "1,1",
                                                    **extra}, port=procs[0].port if procs else None).start()
        procs.append(p)
        return p

    proc = start()
    api = Api(proc.url)
    sid, key = production_service(api, dns)
    yield {"api": api, "sid": sid, "key": key, "start": start, "procs": procs}
    for p in procs:
        p.stop()
    dns.stop()


def subscribe(env, url, events=("delivered",)):
    r = env["api"].admin("POST", f"/api/email/services/{env['sid']}/webhooks", json={"url": url, "events": list(events)})
    assert r.status_code == 201, r.text
    return r.json()


def verify(secret: str, req: dict) -> dict:
    return Webhook(secret).verify(req["body"], {k: req["headers"][k] for k in
                                                ("webhook-id", "webhook-timestamp", "webhook-signature")})


def test_signed_delivery_verifies_and_tampering_fails(env):
    rx = Receiver()
    try:
        hook = subscribe(env, rx.url + "/T0KEN-in-the-path")  # a receiver that authenticates by its URL
        assert hook["secret"].startswith("whsec_")
        email_id = env["api"].send(env["key"], {**SEND, "to": "ann@example.com"}).json()["id"]
        req = rx.wait(1)[0]
        payload = verify(hook["secret"], req)
        assert payload["type"] == "delivered"
        data = payload["data"]
        assert data["email_id"] == email_id and data["service_id"] == env["sid"]
        assert data["recipient"] == "ann@example.com" and data["from"] == "a@acme.test"
        assert data["subject"] == "hello" and data["tags"] == ["t1"] and data["smtp_code"] == 250
        assert req["headers"]["webhook-id"] and payload["created_at"]
        with pytest.raises(WebhookVerificationError):
            verify(hook["secret"], {**req, "body": req["body"].replace(b"ann@", b"eve@")})
        listed = env["api"].admin("GET", f"/api/email/services/{env['sid']}/webhooks").json()["data"]
        assert listed[0]["secret"] is None  # shown once
        assert req["path"] == "/hook/T0KEN-in-the-path"
        assert "T0KEN-in-the-path" not in env["procs"][0].output()  # no log line names the URL
    finally:
        rx.stop()


def test_500s_then_200_retries_with_the_same_id(env):
    rx = Receiver(statuses=[500, 500, 200])
    try:
        hook = subscribe(env, rx.url)
        env["api"].send(env["key"], {**SEND, "to": "ann@example.com"})
        reqs = rx.wait(3)
        assert [r["status"] for r in reqs] == [500, 500, 200]
        assert len({r["headers"]["webhook-id"] for r in reqs}) == 1
        assert reqs[1]["at"] > reqs[0]["at"] and reqs[2]["at"] > reqs[1]["at"]
        for r in reqs:
            verify(hook["secret"], r)
        attempts = _attempts(env, hook["id"], 3)
        assert [a["outcome"] for a in sorted(attempts, key=lambda a: a["attempt"])] == ["retrying", "retrying", "delivered"]
        assert len(rx.received) == 3  # the outbox recorded it delivered: nothing is scheduled after that
        assert all(a["latency_ms"] >= 0 for a in attempts) and attempts[0]["status_code"] in (200, 500)
    finally:
        rx.stop()


def _attempts(env, webhook_id, n, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = env["api"].admin("GET", f"/api/email/services/{env['sid']}/webhooks/{webhook_id}/attempts").json()["data"]
        if len(data) >= n:
            return data
        time.sleep(0.3)
    raise AssertionError(f"attempts: {data}")


def test_endpoint_down_for_the_whole_window_then_replay(env):
    rx = Receiver(statuses=[503])
    try:
        hook = subscribe(env, rx.url)
        env["api"].send(env["key"], {**SEND, "to": "ann@example.com"})
        reqs = rx.wait(3)
        attempts = _attempts(env, hook["id"], 3)
        assert sorted(a["outcome"] for a in attempts) == ["failed", "retrying", "retrying"]
        event_id = attempts[0]["event_id"]
        rx.statuses = [200]
        r = env["api"].admin("POST", f"/api/email/services/{env['sid']}/webhooks/{hook['id']}/replay",
                             json={"event_id": event_id})
        assert r.status_code == 202 and r.json()["events"] == 1
        got = rx.wait(1, predicate=lambda q: q["status"] == 200)
        assert got[0]["headers"]["webhook-id"] == reqs[0]["headers"]["webhook-id"]
        verify(hook["secret"], got[0])
    finally:
        rx.stop()


def test_410_disables_the_endpoint_and_test_event(env):
    rx = Receiver(statuses=[410])
    try:
        hook = subscribe(env, rx.url)
        r = env["api"].admin("POST", f"/api/email/services/{env['sid']}/webhooks/{hook['id']}/test")
        assert r.status_code == 202
        req = rx.wait(1)[0]
        assert json.loads(req["body"])["data"]["email_id"].startswith("test-")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            w = env["api"].admin("GET", f"/api/email/services/{env['sid']}/webhooks/{hook['id']}").json()
            if w["status"] == "disabled":
                break
            time.sleep(0.2)
        assert w["status"] == "disabled" and "410" in w["disabled_reason"]
    finally:
        rx.stop()


def test_secret_rotation_signs_with_both(env):
    rx = Receiver()
    try:
        hook = subscribe(env, rx.url)
        r = env["api"].admin("PATCH", f"/api/email/services/{env['sid']}/webhooks/{hook['id']}",
                             json={"rotate_secret": True})
        new_secret = r.json()["secret"]
        assert new_secret and new_secret != hook["secret"]
        env["api"].admin("POST", f"/api/email/services/{env['sid']}/webhooks/{hook['id']}/test")
        req = rx.wait(1)[0]
        assert len(req["headers"]["webhook-signature"].split(" ")) == 2
        verify(hook["secret"], req)
        verify(new_secret, req)
    finally:
        rx.stop()


def test_stuck_endpoint_does_not_delay_another(env):
    gate = threading.Event()
    stuck, fast = Receiver(gate=gate), Receiver()
    try:
        subscribe(env, stuck.url)
        subscribe(env, fast.url)
        for i in range(12):
            env["api"].send(env["key"], {**SEND, "to": f"u{i}@example.com"})
        fast.wait(12)  # all of them, while the stuck endpoint has not answered a single one
        assert len(stuck.received) == 0
        gate.set()
        stuck.wait(12)
    finally:
        gate.set()
        stuck.stop()
        fast.stop()


def test_kill_mid_fan_out_every_event_reaches_every_endpoint(env):
    gate = threading.Event()
    a, b = Receiver(gate=gate), Receiver()
    try:
        subscribe(env, a.url)
        subscribe(env, b.url)
        ids = [env["api"].send(env["key"], {**SEND, "to": f"k{i}@example.com"}).json()["id"] for i in range(20)]
        b.wait(5)
        env["procs"][-1].kill()  # mid fan-out: endpoint a has not been answered at all
        gate.set()
        env["start"]()
        for rx in (a, b):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with rx.lock:
                    seen = {json.loads(r["body"])["data"]["email_id"] for r in rx.received}
                if seen >= set(ids):
                    break
                time.sleep(0.2)
            assert seen >= set(ids), f"{len(set(ids) - seen)} events never reached {rx.url}"
    finally:
        gate.set()
        a.stop()
        b.stop()


SSRF = ["http://127.0.0.1/x", "http://10.0.0.1/x", "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x", "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x", "http://2130706433/x",
        "http://localhost:8080/x", "http://[fec0::1]/x"]


@pytest.mark.parametrize("url", SSRF)
async def test_ssrf_targets_are_refused(tmp_path, url):
    async with api_runtime(tmp_path) as (rt, admin):
        assert rt.settings.webhook_allow_private is False
        sid = await admin.service()
        r = await admin("POST", f"/api/email/services/{sid}/webhooks", json={"url": url, "events": ["delivered"]})
        assert r.status_code == 400 and r.json()["error"].startswith("url"), r.text
        # and at connect time (a name that changed its answer after the check)
        res = await one_attempt(url)
        assert res.status_code is None and res.error.startswith("refused")


async def one_attempt(url: str):
    """One delivery attempt of a sample event to ``url``, private addresses refused."""
    clients = Clients()
    try:
        return await attempt(clients, url, ["whsec_" + "A" * 32], {"id": "e", "type": "delivered", "time": "t"},
                             allow_private=False, timeout=2)
    finally:
        await clients.aclose()


async def test_a_host_that_does_not_resolve_yet_is_accepted_and_checked_at_each_delivery(tmp_path):
    """As the peers do: a name not published yet (or DNS unreachable from here) is no reason to
    refuse an endpoint; a delivery resolves and checks it before connecting, as for any other."""
    async with api_runtime(tmp_path) as (rt, admin):
        assert rt.settings.webhook_allow_private is False
        sid = await admin.service()
        url = "https://hooks.not-published-yet.invalid/postline"  # RFC 2606: never resolves
        r = await admin("POST", f"/api/email/services/{sid}/webhooks", json={"url": url, "events": ["delivered"]})
        assert r.status_code == 201, r.text
        res = await one_attempt(url)
        assert res.status_code is None and "cannot resolve" in res.error


async def test_bad_webhook_input(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid = await admin.service()
        for body, field in [({"url": "ftp://x.test/", "events": ["delivered"]}, "url"),
                            ({"url": "https://user:pw@x.test/", "events": ["delivered"]}, "url"),
                            # the HTTP client cannot send these: every delivery crashed, retried for ever
                            ({"url": "http://127.0.0.1/\r\nX: y", "events": ["delivered"]}, "url"),
                            ({"url": "http://127.0.0.1/a\tb", "events": ["delivered"]}, "url"),
                            ({"url": "https://example.com/", "events": []}, "events"),
                            ({"url": "https://example.com/", "events": ["exploded"]}, "events")]:
            r = await admin("POST", f"/api/email/services/{sid}/webhooks", json=body)
            assert r.status_code == 400 and r.json()["error"].startswith(field), r.text
