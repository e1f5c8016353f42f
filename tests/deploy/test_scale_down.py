"""A webhooks pod that an autoscaler scales down (SIGTERM, its volume never read again) leaves
no pending delivery behind: its retries of an endpoint that is failing are handed to the
group on the log, and another webhooks process delivers them once the endpoint recovers.

tansu broker, the API and two webhooks processes as separate processes, a real HTTP
endpoint that answers 500 and then 200. (The relays' scheduled sends, which follow their
partitions likewise, are tested in tests/deploy/test_failover.py.)"""
from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest

from tests.support.postline import Api, PostlineProcess
from tests.support.receiver import Receiver

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
N = 6


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
        ok = rx.wait(N, timeout=60, predicate=lambda q: q["status"] == 200)
        assert {json.loads(q["body"])["data"]["email_id"] for q in ok} == failed
    finally:
        for p in procs.values():
            p.stop()
        rx.stop()
