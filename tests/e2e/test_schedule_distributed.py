"""Cancel of a scheduled email in distributed mode: api and relay as separate processes on
Kafka (the tansu broker). The cancel travels on ``email.requests`` keyed by the email id,
so it reaches the relay holding the message, which never sends it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.support.postline import kafka_api_and_relay
from tests.support.smtp_sink import SmtpSink

BODY = {"from": "Acme <hello@acme.test>", "to": ["ann@example.com"], "text": "see you soon"}


@pytest.mark.kafka
def test_cancel_reaches_the_relay_over_kafka(tmp_path, tansu):
    sink = SmtpSink().start()
    try:
        with kafka_api_and_relay(tmp_path, tansu, sink) as (api, sid, key):
            schedule_and_cancel(api, key, sink)
    finally:
        sink.stop()


def schedule_and_cancel(api, key: str, sink) -> None:
    """Two messages due in 6 s; the second is canceled: only the first arrives."""
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
    later = (datetime.fromisoformat(due) + timedelta(seconds=1)).isoformat()
    marker = api.send(key, {**BODY, "subject": "marker", "scheduled_at": later}).json()["id"]
    # the one scheduled alongside arrives, so the relay did release what was due ...
    sink.wait_for(lambda m: f"<{kept}@".encode() in m.data, timeout=60)
    # a marker due a second after them arrives, so the relay's release passed the canceled one's due time ...
    sink.wait_for(lambda m: f"<{marker}@".encode() in m.data, timeout=60)
    # ... and the canceled one never came
    assert not [m for m in sink.received if f"<{dropped}@".encode() in m.data]
