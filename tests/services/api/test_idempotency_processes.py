"""Idempotency-Key across the API processes of ``postline all`` (``POSTLINE_WORKERS=4`` over
one data dir, docs/architecture.md): concurrent requests with one key, each on its own connection, give
one email id, one request on the log and one message at a slow smarthost; the same key with
two bodies at once gives one body's answer (200), 409 for the other, and only that body goes out."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.burst import burst, delivered_ids
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.smtp_sink import SmtpSink

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow]
ROUNDS = 3


def body(to: str, subject: str) -> dict:
    return {"from": "hello@acme.test", "to": to, "subject": subject, "text": "once"}


def appended(data_dir: Path, email_id: str) -> int:
    """Send requests of ``email_id`` on the embedded log (read straight from its file)."""
    with sqlite3.connect(f"file:{data_dir / 'log.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute("SELECT COUNT(*) FROM records WHERE topic='email.requests' AND key=?",
                          (email_id,)).fetchone()[0]


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    """``postline all`` with 4 API processes delivering to a sink that takes 0.3 s a message."""
    tmp = tmp_path_factory.mktemp("idem")
    sink, dns = SmtpSink(data_delay=0.3).start(), DnsServer().start()
    proc = PostlineProcess(tmp / "data", env={"POSTLINE_WORKERS": "4", "POSTLINE_DELIVERY": "smarthost",
                                              "POSTLINE_SMARTHOST": sink.address, "POSTLINE_DNS_SERVER": dns.address})
    proc.start()
    try:
        api = Api(proc.url)
        _, key = production_service(api, dns)
        yield proc, api, key, sink
    finally:
        proc.stop()
        sink.stop()
        dns.stop()


def test_one_key_forty_requests_one_message(installation):
    proc, api, key, sink = installation
    report = []
    for n in range(ROUNDS):
        answers = burst([proc.url], key, f"same-{n}", [body("ann@example.com", f"same {n}")], 40)
        ids = {a.body.get("id") for a in answers}
        statuses = sorted({a.status for a in answers})
        email_id = next(iter(ids))
        api.wait_status(key, email_id, "ann@example.com", "delivered", timeout=60)
        report.append((statuses, len(ids), appended(proc.data_dir, email_id), delivered_ids(sink).count(email_id)))
    assert all(r == ([200], 1, 1, 1) for r in report), f"(statuses, ids, appends, messages) per round: {report}"


def test_one_key_two_bodies_one_wins(installation):
    proc, api, key, sink = installation
    report = []
    for n in range(ROUNDS):
        a, b = body("ann@example.com", f"mixed {n}"), body("bob@example.com", f"mixed {n}")
        answers = burst([proc.url], key, f"mixed-{n}", [a, b], 20)
        won = [x for x in answers if x.status == 200]
        kinds = {tuple(x.body["to"]) for x in won}
        others = sorted(x.status for x in answers if x.status != 200)
        email_id = won[0].body["id"] if won else None
        rcpt = won[0].body["to"][0] if won else None
        if email_id:
            api.wait_status(key, email_id, rcpt, "delivered", timeout=60)
        with sink.lock:
            out = [m.rcpt_tos for m in sink.received if email_id and email_id.encode() in m.data]
        report.append((len(kinds), set(others), appended(proc.data_dir, email_id) if email_id else 0, out))
        # every winner carried the body that went out; every 409 carried the other
        assert all(x.sent["to"] == rcpt for x in won), report
        assert all(x.sent["to"] != rcpt for x in answers if x.status == 409), report
    assert all(r[:3] == (1, {409}, 1) and len(r[3]) == 1 for r in report), \
        f"(200 body kinds, other statuses, appends, messages' recipients) per round: {report}"


def test_a_key_used_again_after_24_hours_is_a_new_message(installation):
    """Resend's keys last 24 h: the same key and body after that is a new send, with a new id,
    and it goes out (an id from the key alone made the relay take it for the delivered one)."""
    proc, api, key, sink = installation
    first = burst([proc.url], key, "daily-report", [body("ann@example.com", "daily report")], 4)
    first_id = first[0].body["id"]
    api.wait_status(key, first_id, "ann@example.com", "delivered", timeout=60)
    with sqlite3.connect(proc.data_dir / "log.sqlite3") as db:  # a day and a minute go by for the key
        aged = db.execute("UPDATE idempotency_claims SET at = at - 86460, since = since - 86460, "
                          "lease_until = lease_until - 86460 WHERE key = 'daily-report'").rowcount
    again = burst([proc.url], key, "daily-report", [body("ann@example.com", "daily report")], 4)
    ids = {a.body.get("id") for a in again}
    assert aged == 1 and {a.status for a in again} == {200} and len(ids) == 1
    second_id = ids.pop()
    assert second_id != first_id
    api.wait_status(key, second_id, "ann@example.com", "delivered", timeout=60)
    assert (delivered_ids(sink).count(first_id), delivered_ids(sink).count(second_id)) == (1, 1)
    assert appended(proc.data_dir, second_id) == 1


def test_one_key_twenty_batches_one_message_per_item(installation):
    """Resend's batch send takes an Idempotency-Key too: concurrent copies of one batch on four
    processes give one answer (the same item ids) and one message per item."""
    proc, api, key, sink = installation
    batch = [body("ann@example.com", "batch item 0"), body("bob@example.com", "batch item 1")]
    answers = burst([proc.url], key, "batch-once", [batch], 20, path="/emails/batch")
    ids = {tuple(item["id"] for item in a.body["data"]) for a in answers}
    assert {a.status for a in answers} == {200} and len(ids) == 1
    first, second = ids.pop()
    api.wait_status(key, first, "ann@example.com", "delivered", timeout=60)
    api.wait_status(key, second, "bob@example.com", "delivered", timeout=60)
    report = [(appended(proc.data_dir, i), delivered_ids(sink).count(i)) for i in (first, second)]
    assert report == [(1, 1), (1, 1)], f"(appends, messages) per item: {report}"
    other = burst([proc.url], key, "batch-once", [[batch[0]]], 1, path="/emails/batch")  # the key, another batch
    assert other[0].status == 409
