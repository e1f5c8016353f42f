"""Relay outcomes against real SMTP servers on loopback: 250, 451, 550, a dropped
connection mid-DATA, retries on a short schedule, MX lookup with preference fallback."""
from __future__ import annotations


import pytest

from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, dkim_results, production_service
from tests.support.smtp_sink import SmtpSink

BODY = {"from": "Acme <hello@acme.test>", "subject": "Hi", "text": "body"}


@pytest.fixture
def dns():
    server = DnsServer().start()
    yield server
    server.stop()


def start(tmp_path, dns, **env) -> tuple[PostlineProcess, Api, str]:
    proc = PostlineProcess(tmp_path / "data", env={"POSTLINE_DNS_SERVER": dns.address,
                                                   "POSTLINE_RETRY_SCHEDULE": "1,1,2",
                                                   "POSTLINE_QUEUE_LIFETIME": "4", **env}).start()
    api = Api(proc.url)
    _, key = production_service(api, dns)
    return proc, api, key


def events_of(api: Api, key: str, email_id: str, rcpt: str, until: str, timeout: float = 30) -> list[dict]:
    api.wait_status(key, email_id, rcpt, until, timeout)
    return [e for e in api.http.get(f"/emails/{email_id}", headers={"Api-Key": key}).json()["events"]
            if e.get("recipient") == rcpt]


def test_per_recipient_outcomes_250_and_550(tmp_path, dns):
    sink = SmtpSink(rcpt_replies={"nobody@example.com": "550 5.1.1 <nobody@example.com>: no such user"}).start()
    proc, api, key = start(tmp_path, dns, POSTLINE_DELIVERY="smarthost", POSTLINE_SMARTHOST=sink.address)
    try:
        r = api.send(key, {**BODY, "to": ["ok@example.com", "nobody@example.com"]})
        email_id = r.json()["id"]
        ok = events_of(api, key, email_id, "ok@example.com", "delivered")
        assert [e["type"] for e in ok] == ["sent", "delivered"] and ok[1]["smtp_code"] == 250
        bad = events_of(api, key, email_id, "nobody@example.com", "bounced")
        assert bad[-1]["bounce_type"] == "hard" and bad[-1]["smtp_code"] == 550
        assert "no such user" in bad[-1]["smtp_reply"]
        assert [m.rcpt_tos for m in sink.received if email_id.encode() in m.data] == [["ok@example.com"]]
    finally:
        proc.stop()
        sink.stop()


def test_451_is_deferred_then_retried_and_delivered(tmp_path, dns):
    sink = SmtpSink(data_replies=["451 4.3.0 try later", "451 4.3.0 try later", "250 2.0.0 ok"]).start()
    proc, api, key = start(tmp_path, dns, POSTLINE_DELIVERY="smarthost", POSTLINE_SMARTHOST=sink.address)
    try:
        email_id = api.send(key, {**BODY, "to": "ann@example.com"}).json()["id"]
        evs = events_of(api, key, email_id, "ann@example.com", "delivered")
        assert [e["type"] for e in evs] == ["sent", "deferred", "deferred", "delivered"]
        assert [e["attempt"] for e in evs if e["type"] == "deferred"] == [1, 2]
        assert evs[1]["smtp_code"] == 451 and "try later" in evs[1]["smtp_reply"]
        # waited for the schedule (1 s, then 1 s) between attempts
        t = [e["time"] for e in evs]
        assert t[2] > t[1] and t[3] > t[2]
        assert len([m for m in sink.received if email_id.encode() in m.data]) == 1
    finally:
        proc.stop()
        sink.stop()


def test_deferred_until_the_queue_lifetime_then_failed(tmp_path, dns):
    sink = SmtpSink(data_replies=["421 4.7.0 busy"]).start()
    proc, api, key = start(tmp_path, dns, POSTLINE_DELIVERY="smarthost", POSTLINE_SMARTHOST=sink.address)
    try:
        email_id = api.send(key, {**BODY, "to": "ann@example.com"}).json()["id"]
        evs = events_of(api, key, email_id, "ann@example.com", "failed", timeout=40)
        types = [e["type"] for e in evs]
        assert types[0] == "sent" and types[-1] == "failed" and types.count("deferred") >= 1
        assert evs[-1]["reason"] == "queue lifetime exceeded"
    finally:
        proc.stop()
        sink.stop()


def test_connection_dropped_mid_data_is_deferred(tmp_path, dns):
    sink = SmtpSink(drop_data=True).start()
    # retried for a minute: on a loaded machine the 4 s lifetime of the other tests could run out
    # between the first deferral seen and the sink's recovery, failing the message instead
    proc, api, key = start(tmp_path, dns, POSTLINE_DELIVERY="smarthost", POSTLINE_SMARTHOST=sink.address,
                           POSTLINE_QUEUE_LIFETIME="60")
    try:
        email_id = api.send(key, {**BODY, "to": "ann@example.com"}).json()["id"]
        evs = events_of(api, key, email_id, "ann@example.com", "deferred")
        assert evs[-1]["smtp_code"] is None and evs[-1]["smtp_reply"]
        sink.drop_data = False  # the server recovers: the retry gets through
        events_of(api, key, email_id, "ann@example.com", "delivered")
    finally:
        proc.stop()
        sink.stop()


def test_mx_delivery_with_preference_fallback(tmp_path, dns):
    sink = SmtpSink().start()
    # MX 10 → a host on 127.0.0.2, where nothing listens on the port; MX 20 → the sink.
    dns.mx("example.com", (10, "mx1.example.com"), (20, "mx2.example.com"))
    dns.a("mx1.example.com", "127.0.0.2")
    dns.a("mx2.example.com", "127.0.0.1")
    dns.mx("nullmx.example", (0, "."))
    proc, api, key = start(tmp_path, dns, POSTLINE_DELIVERY="mx", POSTLINE_MX_PORT=str(sink.port))
    try:
        email_id = api.send(key, {**BODY, "to": ["ann@example.com", "x@nullmx.example"]}).json()["id"]
        evs = events_of(api, key, email_id, "ann@example.com", "delivered")
        assert evs[-1]["mx_host"] == "mx2.example.com"  # the MX by name, not the address it resolved to
        got = sink.wait_for(lambda m: email_id.encode() in m.data)[0]
        assert got.rcpt_tos == ["ann@example.com"]
        assert dkim_results(got.data, dns.address) == [True, True]
        null = events_of(api, key, email_id, "x@nullmx.example", "bounced")
        assert "null MX" in null[-1]["smtp_reply"]
    finally:
        proc.stop()
        sink.stop()
