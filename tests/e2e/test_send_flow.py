"""One email end to end through real processes: embedded (`postline all`) and Kafka
(api and relay as separate processes against the tansu broker)."""
from __future__ import annotations

import pytest

from tests.support.postline import Api, PostlineProcess, inbox_reader, kafka_api_and_relay, sink_reader
from tests.support.smtp_sink import SmtpSink

BODY = {"from": "Acme <hello@acme.test>", "to": ["ann@example.com"], "subject": "Welcome to Acme",
        "message": "<p>Thanks for <b>signing up</b>!</p>"}


@pytest.fixture
def sink():
    s = SmtpSink().start()
    yield s
    s.stop()


def test_readme_flow_dev_inbox(tmp_path):
    """make run → create service, key, verify a sandbox recipient, send → the dev inbox has it."""
    proc = PostlineProcess(tmp_path / "data").start()
    try:
        api = Api(proc.url)
        sid = api.create_service()
        key = api.create_key(sid)
        api.verify_sandbox(sid, "ann@example.com", inbox_reader(api))
        r = api.send(key, BODY)
        assert r.status_code == 200, r.text
        sent = r.json()
        assert sent["status"] == "sent" and sent["mode"] == "sandbox"
        assert sent["from"] == "Acme <sandbox@postline.localhost>"
        # readable at once, then delivered
        assert api.http.get(f"/emails/{sent['id']}", headers={"Api-Key": key}).status_code == 200
        record = api.wait_status(key, sent["id"], "ann@example.com", "delivered")
        assert [e["type"] for e in record["events"]][:2] == ["sent", "delivered"]
        mails = api.admin("GET", "/dev/inbox", params={"to": "ann@example.com"}).json()["data"]
        assert any(m["postline_id"] == sent["id"] and m["subject"] == "Welcome to Acme" for m in mails)
    finally:
        proc.stop()


def test_smarthost_delivery_headers_and_parts(tmp_path, sink):
    proc = PostlineProcess(tmp_path / "data", env={"POSTLINE_DELIVERY": "smarthost",
                                                   "POSTLINE_SMARTHOST": sink.address}).start()
    try:
        api = Api(proc.url)
        sid = api.create_service()
        key = api.create_key(sid)
        api.verify_sandbox(sid, "ann@example.com", sink_reader(sink))
        r = api.send(key, {**BODY, "cc": ["Ann <ann@example.com>"], "headers": {"X-App-Id": "checkout"}})
        assert r.status_code == 200, r.text
        email_id = r.json()["id"]
        got = sink.wait_for(lambda m: f"<{email_id}@".encode() in m.data)
        msg = got[0].message
        assert got[0].rcpt_tos == ["ann@example.com"]
        assert msg["From"] == "Acme <sandbox@postline.localhost>"
        assert msg["Reply-To"] == "Acme <hello@acme.test>"
        assert msg["To"] == "ann@example.com"
        assert msg["Subject"] == "Welcome to Acme"
        assert msg["Date"] is not None and msg["Date"].datetime is not None
        assert msg["Message-ID"] == f"<{email_id}@postline.localhost>"
        assert msg["X-App-Id"] == "checkout"
        assert msg.get_content_type() == "multipart/alternative"
        plain = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert "Thanks for signing up!" in plain  # the text part derived from the HTML (services/relay/html_text.py)
        assert "<b>signing up</b>" in html
        api.wait_status(key, email_id, "ann@example.com", "delivered")
    finally:
        proc.stop()


def test_sigkill_after_200_still_delivers(tmp_path):
    """SIGKILL right after the 200, mid-delivery: after a restart the message is delivered."""
    slow = SmtpSink(data_delay=1.5).start()
    env = {"POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": slow.address}
    proc = PostlineProcess(tmp_path / "data", env=env).start()
    try:
        api = Api(proc.url)
        sid = api.create_service()
        key = api.create_key(sid)
        api.verify_sandbox(sid, "ann@example.com", sink_reader(slow))
        r = api.send(key, BODY)
        assert r.status_code == 200
        email_id = r.json()["id"]
        proc.kill()
        # killed before the sink could accept it (it stalls DATA for 1.5 s)
        assert not [m for m in slow.received if email_id.encode() in m.data]
        proc = PostlineProcess(tmp_path / "data", env=env, port=proc.port).start()
        slow.wait_for(lambda m: email_id.encode() in m.data)
        api.wait_status(key, email_id, "ann@example.com", "delivered")
    finally:
        proc.stop()
        slow.stop()


@pytest.mark.kafka
def test_kafka_mode_api_and_relay_as_separate_processes(tmp_path, tansu, sink):
    with kafka_api_and_relay(tmp_path, tansu, sink) as (api, sid, key):
        r = api.send(key, BODY)
        assert r.status_code == 200, r.text
        email_id = r.json()["id"]
        got = sink.wait_for(lambda m: email_id.encode() in m.data, timeout=60)
        assert got[0].message["Subject"] == "Welcome to Acme"
        assert api.http.get(f"/emails/{email_id}", headers={"Api-Key": key}).json()["id"] == email_id
