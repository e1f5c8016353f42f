"""Rate limits are the service's, however many API processes answer (docs/rate-limits.md): `postline all`
with four API processes over one data dir, a real SMTP sink, real HTTP clients."""
from __future__ import annotations

import threading

import httpx
import pytest

from tests.support.postline import Api, PostlineProcess, sandbox_service
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow
BODY = {"from": "Acme <hello@acme.test>", "to": ["ann@example.com"], "subject": "Hi", "text": "hello"}


@pytest.fixture(scope="module")
def four_workers(tmp_path_factory):
    """`postline all` with 4 API processes (1 relay: the limit is the API's business) and a
    sink, under a send load: another service sends all along (to a recipient its sandbox
    drops, so the load appends requests without counting against anything)."""
    sink = SmtpSink().start()
    proc = PostlineProcess(tmp_path_factory.mktemp("limits") / "data",
                           env={"POSTLINE_WORKERS": "4", "POSTLINE_RELAY_PROCESSES": "1",
                                "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address}).start()
    stop, codes = threading.Event(), []
    try:
        api = Api(proc.url)
        load = threading.Thread(target=send_load, args=(api, stop, codes), daemon=True)
        load.start()
        yield api, sink
        stop.set()
        load.join(30)
        assert codes and set(codes) == {200}, f"the background load was answered {sorted(set(codes))}"
    finally:
        stop.set()
        proc.stop()
        sink.stop()


def send_load(api: Api, stop: threading.Event, codes: list[int]) -> None:
    sid = api.create_service("load")
    key = api.create_key(sid)
    with httpx.Client(base_url=api.http.base_url, timeout=30) as client:  # a new connection: maybe another process
        while not stop.is_set():
            r = client.post(f"/api/email/services/{sid}/send", json={**BODY, "to": ["nobody@example.com"]},
                            headers={"Authorization": f"Bearer {key}"})
            codes.append(r.status_code)


def set_per_minute(api: Api, sid: str, per_minute: int) -> None:
    r = api.admin("PATCH", f"/api/email/services/{sid}", json={"rate_limits": {"per_minute": per_minute}})
    assert r.status_code == 200, r.text


def test_one_keep_alive_client_gets_exactly_its_per_minute(four_workers):
    api, sink = four_workers
    sid, key = sandbox_service(api, sink)
    set_per_minute(api, sid, 40)
    with httpx.Client(base_url=api.http.base_url, timeout=30) as client:  # one connection: one API process
        answers = [client.post("/emails", json=BODY, headers={"Api-Key": key}) for _ in range(45)]
    assert [r.status_code for r in answers] == [200] * 40 + [429] * 5
    refused = answers[40]
    assert refused.json()["error"].startswith("rate limit reached (minute: 40)")
    assert refused.headers["RateLimit-Limit"] == "40" and refused.headers["RateLimit-Remaining"] == "0"
    assert int(refused.headers["Retry-After"]) >= 1
    usage = api.admin("GET", f"/api/email/services/{sid}").json()["rate_limits"]["usage"]
    assert usage["this_minute"] == 40 and usage["today"] == 40 and usage["sandbox_today"] == 40


def test_requests_spread_over_the_processes_share_one_sandbox_cap(four_workers):
    """Each request on a new connection (the kernel spreads them over the 4 processes): the
    sandbox's 50 a day hold for the service, not 50 per process."""
    api, sink = four_workers
    sid, key = sandbox_service(api, sink)
    codes, last = [], None
    for _ in range(60):
        with httpx.Client(base_url=api.http.base_url, timeout=30) as fresh:
            last = fresh.post("/emails", json=BODY, headers={"Api-Key": key, "Connection": "close"})
            codes.append(last.status_code)
    assert codes == [200] * 50 + [429] * 10
    assert last.json()["error"].startswith("rate limit reached (sandbox day: 50)")
    assert last.headers["RateLimit-Limit"] == "50"
