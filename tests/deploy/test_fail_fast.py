"""Fail fast and honest readiness, distributed: a tansu broker of this test's own, the
ClickHouse-HTTP stand-in over chDB, and ``postline api``, ``relay`` and ``analytics`` as
separate processes.

- ClickHouse down: the API and the relay stay ready (sending needs no ClickHouse; their
  ``/readyz`` lists it under ``degraded``), analytics is not ready.
- Broker down: ``POST /emails`` answers 503 with ``Retry-After`` in the house error shape
  once the append timeout (2 s here) passes, well inside the client's 12 s timeout
  (aiokafka alone would have waited 40 s); ``/readyz`` goes non-200 on every role; each
  process logs one line per unavailable dependency per interval, not one per attempt."""
from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.support.broker import Tansu, free_port
from tests.support.clickhouse_http import ClickHouseHttp
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]
APPEND_TIMEOUT = 2
CLIENT_TIMEOUT = 12  # aiokafka's own request timeout is 40 s: without the setting, the POST times out


def ready(url: str) -> tuple[int, dict]:
    r = httpx.get(f"{url}/readyz", timeout=CLIENT_TIMEOUT)
    return r.status_code, r.json()


def wait_readiness(url: str, status: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body = ready(url)
        if code == status:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{url}/readyz never answered {status}: {body}")


def wait_degraded(url: str, timeout: float = 20) -> dict:
    """The ``/readyz`` body once it lists the analytics store as down; every probe on the way
    must answer 200 within 1 s (a kubelet's default probe timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/readyz", timeout=1)
        assert r.status_code == 200, r.text
        if r.json()["degraded"]:
            return r.json()
        time.sleep(0.3)
    raise AssertionError(f"{url}/readyz never listed the analytics store as down: {r.text}")


def error_lines(p: PostlineProcess, since: int) -> list[dict]:
    out = []
    for line in p.output()[since:].splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("level") in ("warning", "error", "critical"):
            out.append(rec)
    return out


def test_clickhouse_down_keeps_sending_ready_and_broker_down_fails_fast(tmp_path):
    broker, dns = Tansu(tmp_path / "tansu.log"), DnsServer().start()
    ch = ClickHouseHttp(tmp_path / "clickhouse").start()
    env = {"POSTLINE_KAFKA_BOOTSTRAP": broker.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "2000", "POSTLINE_CLICKHOUSE_URL": ch.url,
           "POSTLINE_DNS_SERVER": dns.address, "POSTLINE_DELIVERY": "smarthost",
           "POSTLINE_SMARTHOST": f"127.0.0.1:{free_port()}", "POSTLINE_LOG_APPEND_TIMEOUT": str(APPEND_TIMEOUT)}
    procs = {role: PostlineProcess(tmp_path / role, role=role, env=env) for role in ("api", "relay", "analytics")}
    try:
        for p in procs.values():
            p.start(wait=False)
        for p in procs.values():
            p.wait_ready()
        assert ready(procs["relay"].url)[1]["checks"]["requests_assigned"] is True  # the group gave it its share
        api = Api(procs["api"].url)
        api.http.timeout = httpx.Timeout(CLIENT_TIMEOUT)
        _, key = production_service(api, dns)
        body = {"from": "a@acme.test", "to": "ann@example.com", "subject": "s", "text": "t"}
        assert api.send(key, body).status_code == 200

        ch.stop()  # ClickHouse down: sending does not need it
        wait_readiness(procs["analytics"].url, 503)
        for role in ("api", "relay"):  # listed once the ping beside the probes has seen it down
            state = wait_degraded(procs[role].url)
            assert state["ready"] is True and state["degraded"] == {"analytics_store": False}, (role, state)
        assert api.send(key, body).status_code == 200

        marks = {role: len(p.output()) for role, p in procs.items()}
        broker.stop()  # the broker down: fail fast, say so
        r = api.send(key, body)
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["name"] == "service_unavailable" and "Idempotency-Key" in r.json()["error"]
        for role, p in procs.items():
            state = wait_readiness(p.url, 503)
            assert state["checks"]["event_log"] is False, (role, state)
        time.sleep(5)  # consumers, producers and probes keep failing many times a second meanwhile
        for role, p in procs.items():
            lines = error_lines(p, marks[role])
            about = [rec for rec in lines if rec["logger"] == "postline.dependency"]
            assert about, f"{role} never said a dependency was down"
            # one line per dependency per interval (30 s): kafka (the client library) and the event log
            assert len({rec["dependency"] for rec in about}) == len(about) <= 3, (role, about)
            assert len(lines) <= 10, (role, [rec["msg"][:120] for rec in lines])
            assert 'postline_dependency_errors_total{dependency="' in httpx.get(f"{p.url}/metrics").text
    finally:
        for p in procs.values():
            p.stop()
        broker.stop()
        ch.stop()
        dns.stop()


def test_an_unreachable_clickhouse_never_holds_up_the_api_probe(tmp_path):
    """ClickHouse that takes connections and never answers (a partition, not a refusal): the
    API's ``/readyz`` answers 200 within a kubelet's default 1 s timeout all along, and lists
    the store under ``degraded`` once its ping has gone unanswered for 3 s."""
    with socket.socket() as hole:  # the kernel completes the handshakes; nobody ever reads
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        api = PostlineProcess(tmp_path / "api", role="api", env={"POSTLINE_CLICKHOUSE_URL": url}).start()
        try:
            state = wait_degraded(api.url)
            assert state["degraded"] == {"analytics_store": False}, state
            assert ready(api.url)[0] == 200
        finally:
            api.stop()
