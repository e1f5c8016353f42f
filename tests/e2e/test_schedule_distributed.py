"""Cancel of a scheduled email in distributed mode: api and relay as separate processes on
Kafka (the tansu broker). The cancel travels on ``email.requests`` keyed by the email id,
so it reaches the relay holding the message, which never sends it."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.postline import Api, PostlineProcess, sink_reader
from tests.support.smtp_sink import SmtpSink

BODY = {"from": "Acme <hello@acme.test>", "to": ["ann@example.com"], "text": "see you soon"}


def wait_verified(api: Api, sid: str, timeout: float = 30) -> None:
    """The API's control state follows the control topic: under load the verification may
    take a moment to come back from Kafka."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = api.admin("GET", f"/api/email/services/{sid}/sandbox-emails").json()["data"]
        if rows and rows[0]["verified"]:
            return
        time.sleep(0.2)
    raise AssertionError("the sandbox recipient never showed as verified")


@pytest.mark.kafka
def test_cancel_reaches_the_relay_over_kafka(tmp_path, tansu):
    sink = SmtpSink().start()
    env = {"POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "2000",
           "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address}
    api_proc = PostlineProcess(tmp_path / "api", role="api", env=env).start()
    relay = PostlineProcess(tmp_path / "relay", role="relay", env=env).start()
    try:
        api = Api(api_proc.url)
        sid = api.create_service()
        key = api.create_key(sid)
        api.verify_sandbox(sid, "ann@example.com", sink_reader(sink, timeout=60))
        wait_verified(api, sid)
        due = (datetime.now(timezone.utc) + timedelta(seconds=6)).isoformat()
        ids = []
        for subject in ("kept", "canceled"):
            r = api.send(key, {**BODY, "subject": subject, "scheduled_at": due})
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
        kept, dropped = ids
        r = api.http.post(f"/emails/{dropped}/cancel", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.json() == {"object": "email", "id": dropped}
        assert api.http.get(f"/emails/{dropped}", headers={"Api-Key": key}).json()["last_event"] == "canceled"
        # the one scheduled alongside arrives, so the relay did release what was due ...
        sink.wait_for(lambda m: f"<{kept}@".encode() in m.data, timeout=60)
        time.sleep(2)
        # ... and the canceled one never came
        assert not [m for m in sink.received if f"<{dropped}@".encode() in m.data]
    finally:
        relay.stop()
        api_proc.stop()
        sink.stop()
