"""Pods that an autoscaler adds and removes (SIGTERM; a removed pod's volume is never read
again) leave nothing behind on their volumes:

- a relay's scheduled sends follow their partition of ``email.requests`` (the relay that
  gets it holds them, and its cancels and reschedules reach that relay);
- a webhooks process's pending retries go to the group and are made by another.

A tansu broker per test (a module's shared broker would hand one test's leftover requests to
the next one's relays), the API, two relays or two webhooks processes as separate processes,
an SMTP sink, a real HTTP endpoint."""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.broker import Tansu
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, api_and_two_relays, deliveries, production_service
from tests.support.receiver import Receiver
from tests.support.smtp_sink import SmtpSink

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
N = 6


@pytest.fixture
def tansu(tmp_path):
    broker = Tansu(tmp_path / "tansu.log")
    yield broker
    broker.stop()


def pending_in(proc: PostlineProcess) -> int:
    with contextlib.closing(sqlite3.connect(proc.data_dir / "webhooks.sqlite3")) as db:
        return db.execute("SELECT count(*) FROM deliveries WHERE state='pending'").fetchone()[0]


def test_a_stopped_webhooks_process_hands_its_pending_retries_to_the_group(tmp_path, tansu):
    rx = Receiver(statuses=[500])
    env = {"POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "1500", "POSTLINE_WEBHOOK_ALLOW_PRIVATE": "true",
           "POSTLINE_WEBHOOK_RETRY_SCHEDULE": "2,2,2,2,2,2,2,2,2,2"}
    procs = {name: PostlineProcess(tmp_path / name, role=name.split("-")[0], env=env)
             for name in ("api", "webhooks-a", "webhooks-b")}
    try:
        procs["api"].start()
        procs["webhooks-a"].start()
        api = Api(procs["api"].url)
        sid = api.create_service("hooks")
        r = api.admin("POST", f"/api/email/services/{sid}/webhooks", json={"url": rx.url, "events": ["delivered"]})
        assert r.status_code == 201, r.text
        for _ in range(N):
            assert api.admin("POST", f"/api/email/services/{sid}/webhooks/{r.json()['id']}/test").status_code == 202
        failed = {json.loads(q["body"])["data"]["email_id"] for q in rx.wait(N, timeout=30)}
        assert len(failed) == N  # each tried once and answered 500: retries pending on a's volume
        assert pending_in(procs["webhooks-a"]) == N
        procs["webhooks-b"].start()
        assert procs["webhooks-a"].stop() == 0  # scaled down
        assert pending_in(procs["webhooks-a"]) == 0, "the stopped process kept deliveries nobody would make"
        with rx.lock:
            rx.statuses = [200]  # the endpoint recovers
        rx.wait(N, timeout=60, predicate=lambda q: q["status"] == 200)
        time.sleep(2.5)  # a second delivery (the retry schedule is 2 s) would come now
        with rx.lock:
            ok = Counter(json.loads(q["body"])["data"]["email_id"] for q in rx.received if q["status"] == 200)
        assert ok == Counter(failed), "each pending delivery made once, by the other process"
    finally:
        for p in procs.values():
            p.stop()
        rx.stop()


SCHEDULED = 24


def held_by(proc: PostlineProcess, table: str = "scheduled") -> int:
    """How many scheduled sends the relay holds on its volume (``table``: or changes it remembers)."""
    path = proc.data_dir / "scheduled.sqlite3"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        try:
            return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        except sqlite3.OperationalError:  # not made yet
            return 0


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def test_scheduled_sends_follow_their_partitions_when_relays_come_and_go(tmp_path, tansu):
    """A relay pod holds scheduled sends on its volume. When the group moves a partition (an
    autoscaler adds a relay), the sends held for it move to its new owner, which is also the
    relay the partition's reschedules and cancels reach; a relay scaled down (stopped) hands
    over everything it holds — nothing is stranded on its volume, nothing goes out twice, each
    goes at the time it was last moved to, and one canceled after the scale-down does not go."""
    sink, dns = SmtpSink().start(), DnsServer().start()
    procs = api_and_two_relays(tmp_path, tansu, sink, dns)
    try:
        procs["api"].start()
        procs["relay-a"].start()
        api = Api(procs["api"].url)
        _, key = production_service(api, dns)
        later = datetime.now(timezone.utc) + timedelta(minutes=10)
        ids = []
        for i in range(SCHEDULED):
            r = api.send(key, {"from": "hello@acme.test", "to": [f"u{i}@example.com"], "subject": "later",
                               "text": "x", "scheduled_at": later.isoformat()})
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
        assert wait_for(lambda: held_by(procs["relay-a"]) == SCHEDULED, 30)
        procs["relay-b"].start()  # joins: the group gives it some of the partitions
        assert wait_for(lambda: held_by(procs["relay-b"]) > 0
                        and held_by(procs["relay-a"]) + held_by(procs["relay-b"]) == SCHEDULED, 30), \
            (held_by(procs["relay-a"]), held_by(procs["relay-b"]))
        soon = datetime.now(timezone.utc) + timedelta(seconds=8)
        for email_id in ids:  # each reaches the owner of the email's partition
            r = api.http.patch(f"/emails/{email_id}", json={"scheduled_at": soon.isoformat()}, headers={"Api-Key": key})
            assert r.status_code == 200, r.text
        assert procs["relay-a"].stop() == 0  # scaled down
        assert held_by(procs["relay-a"]) == 0, "a stopped relay leaves nothing held on its volume"
        assert held_by(procs["relay-a"], "rescheduled") == 0, "nor a change its partitions' next owner needs"
        canceled = ids[:4]  # after the scale-down: the cancels reach relay b, which now holds them all
        for email_id in canceled:
            r = api.http.post(f"/emails/{email_id}/cancel", headers={"Api-Key": key})
            assert r.status_code == 200, r.text
        kept = ids[4:]
        assert wait_for(lambda: len(deliveries(sink)) >= len(kept), 60), len(deliveries(sink))
        time.sleep(1.0)  # a second copy, or a canceled one, would show now
        seen = deliveries(sink)
        assert Counter(mid for mid, _, _ in seen) == Counter(kept), "each scheduled send delivered once, none canceled"
        assert min(at for _, _, at in seen) >= soon.timestamp() - 0.5, "sent at the time it was moved to"
    finally:
        for p in procs.values():
            p.stop()
        sink.stop()
        dns.stop()
